"""Bad input, third round: files a user names or a game needs, runs that must refuse, messages that name
the real problem, and games that fail in their own code (the catalogue of RELIABILITY.md).

Each table is one surface: command-line mistakes (one ``error:`` line, exit 2, nothing written), files
clemcore reads from the working directory, and games that fail while eval or play plays them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import snapshot

GAMES_DIR = Path(__file__).resolve().parent / "data" / "games"
LEARN = ["learn", "-l", "sft_qlora", "-m", "tiny", "--max_steps", "1"]
GRPO = ["learn", "-l", "grpo_qlora", "-m", "tiny", "--max_steps", "1"]
DEMO = ["--split_source", "<demo split>"]
EVAL = ["eval", "mock", "-g", "wordecho", "--split_source", "<demo split>", "-L", "4"]


def prepare_inputs(d: Path) -> None:
    """Files the mistakes below point at, and a game registry with the demo game and the broken test games."""
    from playpen.files import append_entry
    from playpen_tune.games import write_game_registry

    write_game_registry(d)
    for game in ("stalestate", "missingdata"):
        append_entry({"benchmark_path": str(GAMES_DIR / game)}, d / "game_registry.json")
    user, assistant = {"role": "user", "content": "Say: a"}, {"role": "assistant", "content": "ANSWER: a"}
    (d / "ok.json").write_text(json.dumps([{"messages": [user, assistant]}] * 4))
    (d / "sharegpt.json").write_text(json.dumps([{"conversations": [{"from": "human", "value": "hi"},
                                                                    {"from": "gpt", "value": "hello"}]}]))
    (d / "from-value.json").write_text(json.dumps([{"messages": [{"from": "human", "value": "hi"},
                                                                 {"from": "gpt", "value": "hello"}]}]))
    (d / "human-gpt.json").write_text(json.dumps([{"messages": [{"role": "human", "content": "hi"},
                                                                {"role": "gpt", "content": "hello"}]}]))
    (d / "mapping.yaml").write_text("dataset:\n  path: ok.json\n")
    (d / "notes.txt").write_text("not a trainer\n")
    (d / "empty.jsonl").write_text("")
    from playpen_tune.games import DEMO_SPLIT_FILE

    rows = DEMO_SPLIT_FILE.read_text().splitlines()
    (d / "doubled.jsonl").write_text("\n".join(rows + [json.dumps({"game": "wordecho", "experiment": "heldout",
                                                                   "task_id": 0, "split": "train"})]) + "\n")
    entries = json.loads((d / "model_registry.json").read_text())
    tiny = next(entry for entry in entries if entry["model_name"] == "tiny")
    entries.append({key: value for key, value in tiny.items() if key != "huggingface_id"} | {"model_name": "noweights"})
    (d / "model_registry.json").write_text(json.dumps(entries, indent=2))
    _adapter(d / "malformed-adapter", "{\"peft_type\": ", {"q_proj.lora_A.weight": (4, 64)})
    layer = "base_model.model.model.layers.0.self_attn.q_proj"
    _adapter(d / "misfit-adapter", json.dumps({"peft_type": "LORA", "r": 4}),
             {f"{layer}.lora_A.weight": (4, 999), f"{layer}.lora_B.weight": (64, 4)})


def _adapter(directory: Path, config_text: str, shapes: dict) -> None:
    """An adapter directory: adapter_config.json as given, real safetensors LoRA weights of ``shapes``."""
    import torch
    from safetensors.torch import save_file

    directory.mkdir()
    (directory / "adapter_config.json").write_text(config_text)
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    save_file({name: torch.zeros(shape) for name, shape in shapes.items()},
              str(directory / "adapter_model.safetensors"))


CATALOGUE = [
    # files the user named or a game needs
    ("-i names no instances file", ["eval", "mock", "-g", "wordecho", "-i", "nosuch", "--all_instances"],
     "wordecho: instances file"),
    ("adapter_config.json malformed", ["register", "mine", "--base", "tiny", "--adapter", "malformed-adapter"],
     "malformed-adapter/adapter_config.json is not valid JSON"),
    ("registry entry without huggingface_id (learn)",
     ["learn", "-l", "sft_qlora", "-m", "noweights", "--dataset", "ok.json"],
     "entry of 'noweights' has no 'huggingface_id'"),
    ("registry entry without huggingface_id (register)", ["register", "mine", "--base", "noweights", "--adapter",
                                                          "misfit-adapter"],
     "entry of 'noweights' has no 'huggingface_id'"),
    ("trainer file not Python", ["run", "notes.txt", "-l", "mock"],
     "trainer file notes.txt is not a Python file (.py)"),
    ("--report_to a logger not installed", [*LEARN, "--dataset", "ok.json", "--report_to", "wandb"],
     "pip install wandb"),
    # runs that refuse
    ("grpo trains on the evaluation split", [*GRPO, "-g", "wordecho", "--split", "validation", *DEMO],
     "12 of the 12 instances of --split validation are in the evaluation split"),
    ("grpo held-out reward on its training split", [*GRPO, "-g", "wordecho", "--eval_split", "train", *DEMO],
     "--eval_split train is the split grpo_qlora trains on"),
    ("split source with an instance in two splits", EVAL, "1 instance(s) belong to more than one split"),
    ("baseline is the model itself", [*EVAL, "--baseline", "mock"], "--baseline mock is the model being evaluated"),
    ("held-out set is the training set", [*LEARN, "--dataset", "ok.json", "--eval_dataset", "ok.json"],
     "all 4 --eval_dataset examples are also in --dataset"),
    ("adapter that does not fit the base", ["register", "mine", "--base", "tiny", "--adapter", "misfit-adapter"],
     "model.layers.0.self_attn.q_proj is 64x64 (in x out) in the base, 999x64 in the adapter"),
    ("reward weight above its range", [*GRPO, "-g", "wordecho", "--format_reward", "2", *DEMO],
     "--format_reward must be in [0, 1]"),
    ("negative reward weight", [*GRPO, "-g", "wordecho", "--format_reward", "-0.5", *DEMO],
     "--format_reward must be in [0, 1]"),
    ("quickstart without SFT steps", ["quickstart", "qs", "--sft_steps", "0"], "--sft_steps must be >= 1"),
    # messages that name the real problem
    ("empty split file", ["eval", "mock", "-g", "wordecho", "--split_source", "empty.jsonl"],
     "split source empty.jsonl is empty"),
    ("malformed GameSpec JSON", ["eval", "mock", "-g", "{\"game_name\": \"wordecho\""], "is malformed GameSpec JSON"),
    ("malformed GameSpec JSON (list games)", ["list", "games", "-s", "{\"game_name\""], "is malformed GameSpec JSON"),
    ("YAML mapping where a path is expected", [*LEARN, "-c", "mapping.yaml"], "one entry is a YAML mapping"),
    ("ShareGPT rows", [*LEARN, "--dataset", "sharegpt.json"], "rename 'conversations' to 'messages'"),
    ("ShareGPT messages", [*LEARN, "--dataset", "from-value.json"], "these are ShareGPT-style messages"),
    ("ShareGPT role names", [*LEARN, "--dataset", "human-gpt.json"], "rename gpt to assistant, human to user"),
    ("unknown --attn_implementation", [*LEARN, "--dataset", "ok.json", "--attn_implementation", "flash"],
     "--attn_implementation 'flash' is not an attention implementation transformers knows; use one of eager"),
    # games failing in their own code: grpo_qlora's check episode, before any model loads
    ("grpo game fails in setup", [*GRPO, "-g", "stalestate", "--split_source", "stale-split.jsonl"],
     "stalestate fails in its own code on the check episode (clemcore's programmatic players, before any model "
     "loads): the game's code raised AttributeError: 'StaleGameState' object has no attribute 'outcome'"),
    ("grpo game fails at import", [*GRPO, "-g", "missingdata", "--split_source", "stale-split.jsonl"],
     "the NLTK data 'stopwords' is not installed"),
]


@pytest.mark.parametrize("case, argv, message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_is_one_error_line_and_changes_nothing(workdir, playpen, case, argv, message):
    from playpen_tune.games import DEMO_SPLIT_FILE

    prepare_inputs(workdir)
    rows = [{"game": game, "experiment": "words", "task_id": i, "split": "train"}
            for game in ("stalestate", "missingdata") for i in range(3)]
    (workdir / "stale-split.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    demo = "doubled.jsonl" if case.startswith("split source") else str(DEMO_SPLIT_FILE)
    argv = [demo if a == "<demo split>" else a for a in argv]
    before = snapshot(workdir)
    result = playpen(*argv)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result
    assert "Traceback" not in result.out + result.err and "*****" not in result.out + result.err
    assert snapshot(workdir) == before, f"{case}: files changed"


GAME_REGISTRIES = [
    ("not JSON", "[{\"benchmark_path\": ", "./game_registry.json is malformed (Expecting value"),
    ("not a list", "{\"benchmark_path\": \"games\"}", "./game_registry.json is malformed: a JSON dict, not a list"),
    ("entry without a path", "[{\"game_name\": \"wordecho\"}]",
     "./game_registry.json is malformed: entry 0 (0-based) has no 'game_path' or 'benchmark_path'"),
]


@pytest.mark.parametrize("case, text, message", GAME_REGISTRIES, ids=[c[0] for c in GAME_REGISTRIES])
@pytest.mark.parametrize("command", [["eval", "mock", "-g", "wordecho", "--all_instances"], ["list", "games"]],
                         ids=["eval", "list games"])
def test_a_malformed_game_registry_is_named_not_reported_absent(workdir, playpen, case, text, message, command):
    (workdir / "game_registry.json").write_text(text)
    before = snapshot(workdir)
    result = playpen(*command)
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), result
    assert snapshot(workdir) == before


def _game_without_instances(workdir: Path) -> str:
    """A copy of the stalestate game whose in/instances.json is missing; returns its name."""
    from playpen.files import append_entry

    game = workdir / "games" / "noinstances"
    shutil.copytree(GAMES_DIR / "stalestate", game)
    (game / "in" / "instances.json").unlink()
    spec = json.loads((game / "clemgame.json").read_text())
    (game / "clemgame.json").write_text(json.dumps(dict(spec, game_name="noinstances")))
    append_entry({"benchmark_path": str(game)}, workdir / "game_registry.json")
    return "noinstances"


FAILING_GAMES = [
    ("fails while setting up episodes", "stalestate",
     "3 of 3 episodes were not played and scored: the game's code raised AttributeError: 'StaleGameState' object "
     "has no attribute 'outcome' (at "),
    ("fails at import with a banner", "missingdata",
     "3 of 3 episodes were not played and scored: LookupError: the NLTK data 'stopwords' is not installed"),
    ("has no instances file", None, "noinstances: instances file"),
]


@pytest.mark.parametrize("command", ["eval", "play"])
@pytest.mark.parametrize("case, game, reason", FAILING_GAMES, ids=[c[0] for c in FAILING_GAMES])
def test_a_game_failing_in_its_own_code_is_a_failed_game_with_one_line(workdir, playpen, case, game, reason, command):
    prepare_inputs(workdir)
    game = game or _game_without_instances(workdir)
    result = playpen(command, "mock", "-g", game, "--all_instances", "-r", "out")
    assert result.code == 2 and "some games failed" in result.err, result
    assert "*****" not in result.out + result.err, result  # no banner (clemcore's own log lines may follow)
    summary = json.loads((workdir / "out" / f"mock.{'val' if command == 'eval' else 'play'}.json").read_text())
    failure = summary["failed_games"][game]
    assert reason in failure and "\n" not in failure, failure
    assert any(game in line and "FAILED" in line and reason in line for line in result.out.splitlines()), result


def test_a_game_of_the_suite_without_instances_fails_alone(workdir, playpen):
    """The other games of the selection are played and scored; the one without instances is FAILED."""
    prepare_inputs(workdir)
    broken = _game_without_instances(workdir)
    selector = json.dumps({"benchmark": ["playpen-demo"]})
    game = workdir / "games" / broken
    spec = json.loads((game / "clemgame.json").read_text())
    (game / "clemgame.json").write_text(json.dumps(dict(spec, benchmark=["playpen-demo"])))
    from playpen_tune.games import DEMO_SPLIT_FILE

    result = playpen("eval", "mock", "-g", selector, "--split_source", DEMO_SPLIT_FILE, "-r", "out", "-L", "4")
    assert result.code == 2 and "Traceback" not in result.err, result
    val = json.loads((workdir / "out" / "mock.val.json").read_text())
    assert val["games"]["wordecho"]["episodes"] == 12
    assert "instances file" in val["failed_games"][broken] and "wordecho" not in val["failed_games"]


def test_a_split_file_with_a_byte_order_mark_is_read(workdir, playpen):
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    (workdir / "splits.csv").write_text("\ufeffgame,experiment,task_id,split\nwordecho,heldout,0,validation\n"
                                        "wordecho,heldout,1,validation\n", encoding="utf-8")
    result = playpen("eval", "mock", "-g", "wordecho", "--split_source", "splits.csv", "-r", "out", "-L", "4")
    assert result.code == 0, result
    val = json.loads((workdir / "out" / "mock.val.json").read_text())
    assert val["instances"]["wordecho"] == [["heldout", 0], ["heldout", 1]]


def test_held_out_rows_that_are_also_trained_on_are_a_warning(tmp_path, capsys):
    """Some shared rows: training runs, with a warning that names the risk; all shared: refused (catalogue)."""
    import datasets

    from playpen_tune.learners.training_data import _check_held_out_differs

    rows = [{"messages": [{"role": "user", "content": f"Say: {w}"}, {"role": "assistant", "content": f"ANSWER: {w}"}]}
            for w in ("a", "b", "c")]
    _check_held_out_differs(datasets.Dataset.from_list(rows[:2]), datasets.Dataset.from_list(rows[1:]))
    assert ("warning: 1 of the 2 --eval_dataset examples are also in --dataset and are trained on; the held-out "
            "loss is lower than on unseen data") in capsys.readouterr().out
