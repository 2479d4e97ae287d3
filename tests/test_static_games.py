"""Transcripts of the static suite (statscore's games) stay out of training data unless asked for."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import snapshot

STATIC_GAME = "mmlu_pro"  # not in the local game registry: only the demo game is


@pytest.fixture(scope="module")
def mixed_results(tmp_path_factory) -> Path:
    """The demo game played by clemcore's scripted expert, plus 3 of its episodes filed as mmlu_pro
    episodes (``meta.game_name`` rewritten), as a results directory that also holds the static suite."""
    from playpen_tune.games import play, write_game_registry

    workdir = tmp_path_factory.mktemp("static")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        write_game_registry(workdir)
        results = play(["mock"], workdir / "results", instances="instances_train")
    episodes = sorted(results.rglob("interactions.json"))[:3]
    for index, interactions in enumerate(episodes):
        target = results / "mock" / STATIC_GAME / "0_static" / f"instance_{index:05d}"
        shutil.copytree(interactions.parent, target)
        data = json.loads((target / "interactions.json").read_text())
        data["meta"]["game_name"] = STATIC_GAME
        (target / "interactions.json").write_text(json.dumps(data))
    return results


def only_static(mixed_results: Path, target: Path) -> Path:
    shutil.copytree(mixed_results / "mock" / STATIC_GAME, target / "mock" / STATIC_GAME)
    return target


def test_static_suite_transcripts_are_left_out_and_counted(mixed_results):
    from playpen_tune.data import load_sft_dataset
    from playpen_tune.data.sources import STATIC_DROP_REASON

    total = len(list(mixed_results.rglob("interactions.json")))
    dataset, report = load_sft_dataset([str(mixed_results)])
    assert len(dataset) == total - 3
    assert report.sources[0]["dropped"][STATIC_DROP_REASON] == 3
    assert any("static-suite games (--include_static_games keeps them) 3" in line for line in report.lines())
    kept, kept_report = load_sft_dataset([str(mixed_results)], include_static_games=True)
    assert len(kept) == total and not kept_report.sources[0]["dropped"].get(STATIC_DROP_REASON)


def test_only_static_transcripts_is_one_error_naming_the_option(playpen, workdir, mixed_results, tmp_path):
    results = only_static(mixed_results, workdir / "static-results")
    before = snapshot(workdir)
    for learner in ("sft_qlora", "dpo_qlora"):
        result = playpen("learn", "-l", learner, "-m", "tiny", "--dataset", results)
        assert result.code == 2, result
        errors = [line for line in result.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "--include_static_games" in errors[0] and "static-suite" in errors[0], result
    assert snapshot(workdir) == before


@pytest.mark.slow
def test_include_static_games_trains_on_them(playpen, workdir, mixed_results):
    results = only_static(mixed_results, workdir / "static-results")
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", results, "--include_static_games",
                     "true", "--max_steps", "2", "--max_length", "256")
    assert result.code == 0, result
    manifest = json.loads((workdir / "models" / "tiny-sft_qlora" / "playpen_run.json").read_text())
    assert manifest["data"]["total"] == 3 and manifest["config"]["include_static_games"] is True
