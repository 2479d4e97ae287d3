"""The contamination guard of `playpen learn`: episodes of evaluation-split instances are left out of the
training data by default, counted in the data report and recorded in the manifest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from playpen_tune.games import DEMO_SPLIT_FILE
from tests.conftest import snapshot

FAST = ["--max_steps", "1", "--max_length", "96", "--per_device_train_batch_size", "4",
        "--gradient_accumulation_steps", "1", "--logging_steps", "1", "--save_steps", "100"]
GUARD = ["--split_source", str(DEMO_SPLIT_FILE)]


@pytest.fixture
def all_episodes(workdir, playpen) -> Path:
    """The expert's episodes of all 60 wordecho instances: 48 of the train split, 12 of the validation split."""
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    result = playpen("play", "mock", "-g", "wordecho", "--all_instances", "-r", "all")
    assert result.code == 0, result
    return workdir / "all"


def _manifest(workdir: Path, name: str) -> dict:
    return json.loads((workdir / "models" / name / "playpen_run.json").read_text())


def test_sft_leaves_out_evaluation_instances_and_records_it(all_episodes, playpen):
    workdir = all_episodes.parent
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", "all", *GUARD, *FAST)
    assert result.code == 0, result
    assert "dropped: evaluation instances 12" in result.out
    assert f"evaluation instances: 12 conversation(s) left out (split 'validation' of {DEMO_SPLIT_FILE})" in result.out
    data = _manifest(workdir, "tiny-sft_qlora")["data"]
    assert data["total"] == 48 and data["sources"][0]["dropped"]["evaluation instances"] == 12
    assert {key: data["contamination"][key] for key in ("checked", "split_source", "split", "excluded")} == \
        {"checked": True, "split_source": str(DEMO_SPLIT_FILE), "split": "validation", "excluded": 12}


def test_allow_eval_instances_keeps_them_and_says_so(all_episodes, playpen):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", "all", *GUARD, *FAST,
                     "--allow_eval_instances", "true")
    assert result.code == 0, result
    data = _manifest(all_episodes.parent, "tiny-sft_qlora")["data"]
    assert data["total"] == 60
    assert data["contamination"]["checked"] is False and data["contamination"]["reason"] == "--allow_eval_instances"


def test_unreadable_default_source_warns_and_records_that_nothing_was_checked(all_episodes, playpen):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", "all", *FAST)
    assert result.code == 0, result
    assert "warning: cannot read the instance splits of 'colab-potsdam/playpen-data'" in result.out
    assert "were NOT checked against the evaluation split" in result.out
    data = _manifest(all_episodes.parent, "tiny-sft_qlora")["data"]
    assert data["total"] == 60 and data["contamination"]["checked"] is False
    assert data["contamination"]["reason"].startswith("default split source unreadable")


@pytest.mark.parametrize("source, message", [
    ("someorg/splits", "cannot read the instance splits of 'someorg/splits'"),
    ("missing.jsonl", "split source missing.jsonl does not exist"),
])
def test_an_explicit_split_source_that_cannot_be_read_is_an_error(all_episodes, playpen, source, message):
    workdir = all_episodes.parent
    before = snapshot(workdir)
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", "all", "--split_source", source, *FAST)
    assert result.code == 2 and message in result.err, result
    assert snapshot(workdir) == before and not (workdir / "models").exists()


def test_only_evaluation_episodes_is_an_error_that_names_the_switch(workdir, playpen):
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    assert playpen("play", "mock", "-g", "wordecho", *GUARD, "--split", "validation", "-r", "val").code == 0
    before = snapshot(workdir)
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", "val", *GUARD, *FAST)
    assert result.code == 2, result
    assert "the 12 remaining conversations are all of instances of the evaluation split" in result.err
    assert "--allow_eval_instances true" in result.err
    assert snapshot(workdir) == before


def test_dpo_pairs_of_evaluation_instances_are_left_out(all_episodes, playpen):
    """Pairs come from episodes of the same instance: the tiny model's failures vs the expert's successes."""
    workdir = all_episodes.parent
    assert playpen("play", "tiny", "-g", "wordecho", "--all_instances", "-r", "all", "-L", "4").code == 0
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", "all", *GUARD, *FAST)
    assert result.code == 0, result
    data = _manifest(workdir, "tiny-dpo_qlora")["data"]
    assert data["total"] == 48  # one pair per train instance; the 12 validation instances' 24 episodes are out
    assert data["sources"][0]["dropped"]["evaluation instances"] == 24 and data["contamination"]["excluded"] == 24
