"""The playpen host: entry-point discovery, plugins, CLI errors, config parsing, import cost."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from playpen import config as cfg
from playpen.errors import PlaypenError
from playpen_tune.config import SFTQLoRAConfig

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "clemcore.cli")


def loaded_heavy_modules(*argv: str) -> list[str]:
    code = ("import sys\nfrom playpen.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('HEAVY=' + ','.join(m for m in %r if m in sys.modules))" % (list(argv), HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [m for m in out.rsplit("HEAVY=", 1)[1].strip().split(",") if m]


@pytest.mark.parametrize("argv", [["--help"], ["list", "learners"], ["list", "plugins"]])
def test_fast_commands_import_no_heavy_library(argv):
    assert loaded_heavy_modules(*argv) == []


def test_learners_come_from_entry_points(playpen):
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group="playpen.learners")}
    assert declared["sft_qlora"] == "playpen_tune.learners.sft:SFTQLoRALearner"
    assert declared["dpo_qlora"] == "playpen_tune.learners.dpo:DPOQLoRALearner"
    result = playpen("list", "learners")
    assert result.code == 0
    assert "sft_qlora" in result.out and "dpo_qlora" in result.out
    assert "playpen-tune 0.1.0" in result.out


def test_builtin_plugin_is_an_entry_point_with_its_hooks(playpen):
    from importlib.metadata import entry_points

    assert {ep.name: ep.value for ep in entry_points(group="playpen")}["playpen_tune"] == "playpen_tune.plugin"
    result = playpen("list", "plugins")
    assert "playpen_tune  [playpen-tune 0.1.0]" in result.out
    assert "playpen_after_learn" in result.out and "playpen_register_backends" in result.out


def test_hook_tracing_env_var_prints_hook_calls():
    env = dict(os.environ, PLAYPEN_TRACE_PLUGINS="1")
    proc = subprocess.run([sys.executable, "-m", "playpen", "list", "learners"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "playpen_register_learners [hook]" in proc.stderr
    assert "finish playpen_register_learners" in proc.stderr


def test_plugin_backends_are_injected_into_clemcore():
    from clemcore.backends import BackendRegistry

    from playpen.clemcore_bridge import install_plugin_backends

    assert install_plugin_backends()["playpen_qlora"] == "playpen_tune.backend:QLoRABackend"
    registry = BackendRegistry.from_packaged_and_cwd_files()
    assert registry.is_supported("playpen_qlora")
    assert registry.is_supported("huggingface_local")  # clemcore's own still there
    backend = registry.get_backend_for("playpen_qlora")
    assert type(backend).__name__ == "QLoRABackend"


def test_unknown_learner_lists_installed(playpen):
    result = playpen("learn", "-l", "nope", "-m", "tiny")
    assert result.code == 2
    assert "unknown learner 'nope'" in result.err and "sft_qlora" in result.err
    assert "Traceback" not in result.err


def test_unknown_model(playpen, workdir):
    result = playpen("learn", "-l", "sft_qlora", "-m", "no-such-model", "--dataset", "x.json")
    assert result.code == 2 and "unknown model 'no-such-model'" in result.err


def test_unknown_field_suggests_closest(playpen, workdir):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--learning_rat", "1e-4")
    assert result.code == 2
    assert "unknown config field 'learning_rat'" in result.err and "did you mean 'learning_rate'" in result.err


def test_bad_value_type(playpen, workdir):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--max_steps", "ten")
    assert result.code == 2 and "--max_steps expects a int value, got 'ten'" in result.err


def test_learner_help_lists_config_fields(playpen):
    result = playpen("learn", "-l", "sft_qlora", "--help")
    assert result.code == 0
    assert "--lora_r (int, default 16)" in result.out and "--assistant_only_loss" in result.out


def test_overrides_parse_types_lists_and_flags():
    values = cfg.parse_overrides(SFTQLoRAConfig, [
        "--dataset", "a.json", "--dataset=b.jsonl", "--learning_rate", "1e-4", "--packing",
        "--outcomes", "success,failure", "--save_total_limit", "none"])
    config = cfg.build_config(SFTQLoRAConfig, {"learning_rate": 3e-4, "lora_r": 8}, values)
    assert config.dataset == ["a.json", "b.jsonl"]
    assert config.learning_rate == 1e-4  # CLI wins over YAML
    assert config.lora_r == 8  # YAML applies where the CLI is silent
    assert config.packing is True
    assert config.outcomes == ["success", "failure"]
    assert config.save_total_limit is None


@pytest.mark.parametrize("values, message", [
    ({"per_device_train_batch_size": "0"}, "--per_device_train_batch_size must be > 0"),
    ({"max_steps": "-5"}, "--max_steps must be > 0"),
    ({"packing": "maybe"}, "--packing expects a bool value"),
    ({"outcomes": "won"}, "--outcomes accepts success, failure, aborted"),
])
def test_bad_values_are_user_errors(values, message):
    with pytest.raises(PlaypenError, match=message):
        cfg.build_config(SFTQLoRAConfig, {}, values)


def test_every_config_field_has_help():
    for field in dataclasses.fields(SFTQLoRAConfig):
        assert field.metadata.get("help"), field.name


def test_custom_learner_package_installs_and_runs(tmp_path, shared_data):
    """pip-installs examples/custom_learner into a target dir and drives it through the real CLI."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO / "examples" / "custom_learner")], check=True)
    env = dict(os.environ, PYTHONPATH=str(target))
    run = lambda *a: subprocess.run([sys.executable, "-m", "playpen", *a], env=env, cwd=tmp_path,
                                    capture_output=True, text=True)
    listing = run("list", "learners")
    assert "wordcount" in listing.stdout and "playpen-wordcount 0.1.0" in listing.stdout
    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in json.loads(
        (shared_data / "clembench-evaluation" / "sft_dataset_509.json").read_text())[:20]))
    model_dir = tmp_path / "somemodel"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    result = run("learn", "-l", "wordcount", "-m", str(model_dir), "--dataset", str(data), "--top_k", "2")
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "models" / "somemodel-wordcount" / "wordcount.json").read_text())
    assert set(written["top"]) == {"user", "assistant"}
    assert all(len(words) == 2 for words in written["top"].values())
    assert "examples: 20" in result.stdout


TRAINER_FILE = '''
import json
from playpen import BasePlayPen

class RecordingTrainer(BasePlayPen):
    def learn(self, game_registry):
        with open("trainer_ran.json", "w") as handle:
            json.dump({"learner": self.learner.name, "teacher": self.teacher.name if self.teacher else None,
                       "max_tokens": self.learner.max_tokens, "games": len(game_registry)}, handle)
'''


def test_run_executes_an_upstream_style_trainer_file(playpen, workdir):
    (workdir / "my_trainer.py").write_text(TRAINER_FILE)
    result = playpen("run", "my_trainer.py", "-l", "tiny", "-t", "tiny-bnb-4bit", "-L", "17")
    assert result.code == 0, result
    ran = json.loads((workdir / "trainer_ran.json").read_text())
    assert ran == {"learner": "tiny", "teacher": "tiny-bnb-4bit", "max_tokens": 17, "games": 0}


def test_run_without_a_trainer_class_is_a_user_error(playpen, workdir):
    (workdir / "empty.py").write_text("x = 1\n")
    result = playpen("run", "empty.py", "-l", "tiny")
    assert result.code == 2 and "no BasePlayPen subclass in empty.py" in result.err
