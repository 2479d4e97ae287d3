"""Published runs: ``playpen eval --baseline`` with a results directory in upstream playpen's layout
(``<model>.val.json``, ``clem/<model>/...`` episodes scored by clemcore) or a val.json alone, and
``--skip_gameplay`` over such a directory."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import snapshot

EVAL = ["-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-L", "4", "-r", "ev"]


@pytest.fixture
def published_run(workdir) -> Path:
    """``published/``: the demo game's held-out instances played by clemcore's scripted expert (``mock``) under
    ``clem/mock/``, and ``mock.val.json`` with the clemscore clemcore computes from them, as upstream writes it."""
    from clemcore import clemeval

    from playpen_tune.games import play, write_game_registry

    write_game_registry(workdir)
    published = workdir / "published"
    play(["mock"], published / "clem", instances="instances_heldout", game="wordecho")
    table = clemeval.perform_evaluation(str(published / "clem"), return_dataframe=True)
    (published / "mock.val.json").write_text(json.dumps({"clemscore": float(table.loc["mock", "-, clemscore"]),
                                                         "statscore": None}))
    return published


def test_a_published_run_is_the_baseline_without_playing_it(published_run, workdir, playpen):
    before = snapshot(published_run)
    result = playpen("eval", "tiny", "--baseline", "published", *EVAL)
    assert result.code == 0, result
    assert snapshot(published_run) == before  # read, never written
    assert not (workdir / "ev" / "mock.val.json").exists() and not (workdir / "ev" / "clem" / "mock").exists()
    tiny = json.loads((workdir / "ev" / "tiny.val.json").read_text())
    assert tiny["baseline_source"]["kind"] == "published run"
    assert tiny["baseline_source"]["path"] == str(published_run / "mock.val.json")
    markdown = (workdir / "ev" / "comparison.md").read_text()
    assert "| game | mock (base) | tiny (tuned) | delta |" in markdown
    assert "| wordecho | 100.00 | 0.00 | -100.00 |" in markdown  # the expert's episodes, scored by clemcore
    assert f"from published run {published_run / 'mock.val.json'}" in markdown


def test_a_val_json_alone_gives_its_own_numbers(published_run, workdir, playpen, tmp_path):
    alone = tmp_path / "elsewhere" / "mock.val.json"
    alone.parent.mkdir()
    shutil.copy(published_run / "mock.val.json", alone)
    result = playpen("eval", "tiny", "--baseline", alone, *EVAL)
    assert result.code == 0, result
    tiny = json.loads((workdir / "ev" / "tiny.val.json").read_text())
    assert tiny["baseline_source"]["kind"] == "val.json"
    markdown = (workdir / "ev" / "comparison.md").read_text()
    assert "| clemscore | 100.00 | 0.00 | -100.00 |" in markdown and "| wordecho | - | 0.00 | - |" in markdown


def test_a_published_run_missing_selected_episodes_fails_that_game(published_run, workdir, playpen):
    shutil.rmtree(sorted((published_run / "clem" / "mock" / "wordecho" / "heldout").glob("instance_*"))[0])
    result = playpen("eval", "tiny", "--baseline", "published", *EVAL)
    assert result.code == 2 and "some games failed" in result.err
    markdown = (workdir / "ev" / "comparison.md").read_text()
    assert "| wordecho | FAILED | 0.00 | - |" in markdown
    assert "1 of 12 selected episodes are not in the published run" in markdown


@pytest.mark.parametrize("baseline, message", [
    ("missing.val.json", "--baseline missing.val.json does not exist"),
    ("broken.val.json", "cannot be read as JSON"),
    ("other.json", "is not a val.json"),
    ("two", "must hold one <model>.val.json (found: a.val.json, b.val.json)"),
])
def test_a_bad_published_baseline_is_one_error_line(workdir, playpen, baseline, message):
    (workdir / "broken.val.json").write_text("{not json")
    (workdir / "other.json").write_text("[]")
    (workdir / "two").mkdir()
    for name in ("a", "b"):
        (workdir / "two" / f"{name}.val.json").write_text('{"clemscore": 1.0}')
    before = snapshot(workdir)
    result = playpen("eval", "tiny", "--baseline", baseline, *EVAL)
    assert result.code == 2 and result.err.count("error:") == 1 and message in result.err, result
    assert snapshot(workdir) == before


def test_skip_gameplay_over_a_run_whose_scorer_fails_lists_that_game_as_failed(workdir, playpen):
    """A game whose scorer does not read the run's episodes (another game version) or cannot be loaded is a failed
    game with clemcore's reason; the other games are scored."""
    from tests.test_eval import add_game_variant

    add_game_variant(workdir, "rescored", "pass")
    add_game_variant(workdir, "unloadable", "pass")
    selector = json.dumps({"benchmark": ["playpen-demo"]})
    args = ["eval", "mock", "-g", selector, "-i", "instances_heldout", "--all_instances", "-r", "published"]
    assert playpen(*args).code == 0
    master = workdir / "games" / "rescored" / "master.py"
    scorer = "    def compute_episode_scores(self, interactions: dict):\n"
    assert scorer in master.read_text()
    master.write_text(master.read_text().replace(scorer, scorer + "        raise KeyError('Main Score')\n"))
    (workdir / "games" / "unloadable" / "master.py").write_text("this is not python\n")
    result = playpen(*args, "--skip_gameplay")
    # the command ends in its error line (in-process, logging may report a stream an earlier test's capture closed)
    assert result.code == 2 and result.err.strip().splitlines()[-1].startswith("error: some games failed")
    val = json.loads((workdir / "published" / "mock.val.json").read_text())
    assert val["games"]["wordecho"]["% played"] == 100.0
    assert val["failed_games"]["rescored"].startswith("clemcore could not score it (the game's code raised KeyError: "
                                                      "'Main Score' (at ")
    assert "; 12 episodes raised)" in val["failed_games"]["rescored"]
    assert val["failed_games"]["unloadable"].startswith("clemcore could not score it (the game's code raised NameError")


def test_split_revision_pins_the_hub_split_source_and_is_recorded(workdir, playpen, monkeypatch):
    """``--split_revision`` reaches ``datasets.load_dataset`` (the hub, stood in for by rows of the demo game's own
    split file, as the hub would serve them) and val.json records it; a local source has no revisions."""
    import datasets

    from playpen_tune.games import DEMO_SPLIT_FILE, write_game_registry

    write_game_registry(workdir)
    rows = [json.loads(line) for line in Path(DEMO_SPLIT_FILE).read_text().splitlines() if line.strip()]
    asked = []

    def hub(source, config, split, revision=None):
        asked.append((source, config, split, revision))
        return datasets.Dataset.from_list([row for row in rows if row["split"] == split])

    monkeypatch.setattr(datasets, "load_dataset", hub)
    result = playpen("eval", "mock", "-g", "wordecho", "--split_revision", "v1.0", "-r", "ev")
    assert result.code == 0, result
    assert asked == [("colab-potsdam/playpen-data", config, "validation", "v1.0")
                     for config in ("instances", "instances-static")]
    val = json.loads((workdir / "ev" / "mock.val.json").read_text())
    assert val["split_revision"] == "v1.0" and val["split"] == "validation"
    assert val["games"]["wordecho"]["episodes"] == sum(row["split"] == "validation" for row in rows)
    local = playpen("eval", "mock", "-g", "wordecho", "--split_source", DEMO_SPLIT_FILE, "--split_revision", "v1.0",
                    "-r", "ev2")
    assert local.code == 2 and "is a local split source, which has no revisions" in local.err
    assert not (workdir / "ev2").exists()
