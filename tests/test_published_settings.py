"""``playpen eval``/``play`` default to the published table's settings (T 0, max_tokens 5000,
``enable_thinking: false`` for templates that read it); val.json records what was used and which
published setting it matches."""
from __future__ import annotations

import json

from playpen_tune.tiny import CHAT_TEMPLATE

# clemcore parses a template with plain Jinja when chat_template_kwargs are set: no {% generation %} markers here
THINKING_TEMPLATE = (CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
                     + "{% if add_generation_prompt and enable_thinking is defined and not enable_thinking %}"
                     "{{ '(no thinking) ' }}{% endif %}")


def test_eval_defaults_to_the_published_generation_settings(workdir, playpen):
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    result = playpen("eval", "mock", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-r", "ev")
    assert result.code == 0, result
    val = json.loads((workdir / "ev" / "mock.val.json").read_text())
    assert val["generation"] == {"temperature": 0.0, "max_tokens": 5000}
    assert val["chat_template_kwargs"] == {} and val["published_setting"] == "lm-playschool-2026"
    assert val["leaderboard_comparable"] is False  # -g, -i and --all_instances: other instances
    assert not any("generation settings" in reason for reason in val["not_comparable_because"])
    quick = playpen("eval", "mock", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-r", "quick",
                    "-L", "300")
    assert quick.code == 0, quick
    val = json.loads((workdir / "quick" / "mock.val.json").read_text())
    assert val["generation"]["max_tokens"] == 300 and val["published_setting"] is None
    assert any("max_tokens 5000" in reason and "max_tokens 300" in reason for reason in val["not_comparable_because"])


def test_a_template_that_reads_enable_thinking_plays_with_it_off(workdir, playpen, tmp_path):
    from playpen_tune.games import write_game_registry
    from playpen_tune.tiny import build_tiny_chat_model, registry_entry

    write_game_registry(workdir)
    thinking = build_tiny_chat_model(tmp_path / "thinking-model", chat_template=THINKING_TEMPLATE)
    entries = json.loads((workdir / "model_registry.json").read_text())
    chosen = dict(registry_entry("chosen", thinking),
                  model_config={**registry_entry("chosen", thinking)["model_config"],
                                                                    "chat_template_kwargs": {"enable_thinking": True}})
    entries += [registry_entry("thinker", thinking), chosen]
    (workdir / "model_registry.json").write_text(json.dumps(entries))
    args = ["-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-L", "4", "-r", "ev"]
    assert playpen("eval", "thinker", "--baseline", "tiny", *args).code == 0
    thinker = json.loads((workdir / "ev" / "thinker.val.json").read_text())
    assert thinker["chat_template_kwargs"] == {"enable_thinking": False}
    played = json.loads((workdir / "ev" / "clem" / "thinker" / "playpen_eval.json").read_text())
    assert played["model"]["model_config"]["chat_template_kwargs"] == {"enable_thinking": False}  # what clemcore got
    tiny = json.loads((workdir / "ev" / "tiny.val.json").read_text())
    assert tiny["chat_template_kwargs"] == {}  # its template does not read enable_thinking: nothing added
    assert thinker["published_setting"] is None and tiny["published_setting"] is None  # -L 4
    assert playpen("eval", "chosen", *args).code == 0  # the registry entry's own setting wins ...
    chosen_val = json.loads((workdir / "ev" / "chosen.val.json").read_text())
    assert chosen_val["chat_template_kwargs"] == {"enable_thinking": True}
    assert any("enable_thinking False" in reason for reason in chosen_val["not_comparable_because"])  # ... and says so
    from clemcore.backends import ModelSpec

    from playpen.published import matching_setting

    spec = ModelSpec.from_dict(registry_entry("thinker", thinking))
    assert matching_setting({"temperature": 0.0, "max_tokens": 5000}, {"enable_thinking": False},
                            spec) == "lm-playschool-2026"
    assert matching_setting({"temperature": 0.0, "max_tokens": 5000}, {}, spec) is None


def test_play_defaults_to_the_published_settings_too(workdir, playpen):
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    assert playpen("play", "mock", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-r", "tr").code == 0
    summary = json.loads((workdir / "tr" / "mock.play.json").read_text())
    assert summary["gen_args"] == {"temperature": 0.0, "max_tokens": 5000}
    assert summary["chat_template_kwargs"] == {"mock": {}}


def test_a_template_that_cannot_be_read_claims_no_published_setting(tmp_path):
    from clemcore.backends import ModelSpec

    from playpen.published import published_record
    from playpen_tune.tiny import registry_entry

    spec = ModelSpec.from_dict(registry_entry("ghost", tmp_path / "no-such-model"))
    record = published_record({"temperature": 0.0, "max_tokens": 5000}, {}, spec)
    assert record["published_setting"] is None and "could not be read" in record["not_comparable_because"][0]
    scripted = published_record({"temperature": 0.0, "max_tokens": 5000}, {}, ModelSpec.from_name("mock"))
    assert scripted["published_setting"] == "lm-playschool-2026" and scripted["not_comparable_because"] == []
