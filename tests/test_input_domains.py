"""Every option in its domain, every path of the right kind, every data source with a training signal:
each mistake is one ``error:`` line, exit 2, and nothing written (the catalogue of RELIABILITY.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import snapshot

LEARN = ["learn", "-l", "sft_qlora", "-m", "tiny"]
DPO = ["learn", "-l", "dpo_qlora", "-m", "tiny"]
EVAL = ["eval", "mock", "-g", "wordecho", "-i", "instances_heldout"]


def prepare_inputs(d: Path) -> None:
    turn = {"role": "user", "content": "Say the word: apple"}
    (d / "ok.json").write_text(json.dumps([{"messages": [turn, {"role": "assistant", "content": "ANSWER: apple"}]}]))
    (d / "no-answers.json").write_text(json.dumps([{"messages": [turn, {"role": "assistant", "content": ""}]},
                                                   {"messages": [turn]}]))
    (d / "empty-completions.jsonl").write_text(json.dumps({"prompt": "Say the word: apple", "completion": ""}) + "\n")
    (d / "same.json").write_text(json.dumps([{"prompt": "Say: a", "chosen": "ANSWER: a", "rejected": "ANSWER: a"}] * 3))
    (d / "a-file").write_text("not a directory\n")
    (d / "a-dir").mkdir()
    (d / "trainer.py").mkdir()


CATALOGUE = [
    # generation settings out of range
    ("negative temperature", [*EVAL, "-T", "-0.5"], "-T/--temperature must be a finite number >= 0"),
    ("non-finite temperature", [*EVAL, "-T", "inf"], "-T/--temperature must be a finite number >= 0"),
    ("no tokens per turn", [*EVAL, "-L", "0"], "-L/--max_tokens must be >= 1"),
    ("run with negative temperature", ["run", "trainer.py", "-l", "mock", "-T", "-1"], "-T/--temperature must be"),
    # other option domains
    ("negative seed", [*LEARN, "--dataset", "ok.json", "--seed", "-1"], "--seed must be in [0, 2**32)"),
    ("seed too large", [*LEARN, "--dataset", "ok.json", "--seed", str(2**32)], "--seed must be in [0, 2**32)"),
    ("keep no checkpoint", [*LEARN, "--dataset", "ok.json", "--save_total_limit", "0"],
     "--save_total_limit must be >= 1"),
    # a path of the wrong kind
    ("output dir is a file", [*LEARN, "--dataset", "ok.json", "--output_dir", "a-file"],
     "output_dir a-file is a file, not a directory"),
    ("results dir is a file", [*EVAL, "-r", "a-file"], "-r/--results_dir a-file is a file, not a directory"),
    ("config is a directory", [*LEARN, "-c", "a-dir"], "config file a-dir is a directory, not a file"),
    ("trainer file is a directory", ["run", "trainer.py", "-l", "mock"], "trainer file trainer.py is a directory"),
    ("adapter is a file", ["register", "mine", "--base", "tiny", "--adapter", "a-file"],
     "--adapter a-file is a file, not a directory"),
    ("quickstart dir is a file", ["quickstart", "a-file"], "quickstart directory a-file is a file"),
    ("install-backend dir is a file", ["install-backend", "a-file"], "install-backend directory a-file is a file"),
    # data that carries no training signal
    ("SFT rows without answers", [*LEARN, "--dataset", "no-answers.json"],
     "no assistant message (or completion) has content"),
    ("SFT rows with empty completions", [*LEARN, "--dataset", "empty-completions.jsonl"], "nothing to learn"),
    ("preference rows with chosen == rejected", [*DPO, "--dataset", "same.json"],
     "in all 3 rows chosen and rejected are the same"),
]


@pytest.mark.parametrize("case, argv, message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_out_of_domain_input_exits_2_with_one_line_and_changes_nothing(workdir, playpen, case, argv, message):
    from playpen_tune.games import write_game_registry

    prepare_inputs(workdir)
    write_game_registry(workdir)
    before = snapshot(workdir)
    result = playpen(*argv)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result
    assert "Traceback" not in result.out + result.err
    assert snapshot(workdir) == before, f"{case}: files changed"


def test_rows_without_signal_among_good_ones_are_dropped_and_counted(tmp_path):
    from playpen_tune.data import load_preference_dataset, load_sft_dataset

    prepare_inputs(tmp_path)
    rows = json.loads((tmp_path / "ok.json").read_text()) + json.loads((tmp_path / "no-answers.json").read_text())
    (tmp_path / "mixed.json").write_text(json.dumps(rows))
    dataset, report = load_sft_dataset([str(tmp_path / "mixed.json")])
    assert len(dataset) == 1 and report.sources[0]["dropped"] == {"no assistant answer to learn": 2}
    assert "dropped: no assistant answer to learn 2" in "\n".join(report.lines())
    pairs = json.loads((tmp_path / "same.json").read_text()) + [{"prompt": "Say: b", "chosen": "ANSWER: b",
                                                                "rejected": "b"}]
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    dataset, report = load_preference_dataset([str(tmp_path / "pairs.json")])
    assert len(dataset) == 1 and report.sources[0]["dropped"] == {"chosen identical to rejected": 3}
