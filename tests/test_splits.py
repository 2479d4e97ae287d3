"""Instance splits: eval plays the validation split by default (hub source, or a local file), records
what it played, and refuses split sources that do not fit the games before playing anything."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from playpen_tune.games import DEMO_SPLIT_FILE
from tests.conftest import snapshot
from tests.test_eval import add_game_variant, set_benchmark

VALIDATION = [["heldout", game_id] for game_id in range(12)]


@pytest.fixture
def demo_workdir(workdir) -> Path:
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    return workdir


def _error_lines(result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("error:")]


def test_eval_without_a_readable_default_source_names_the_ways_out(demo_workdir, playpen):
    """The default source is the hub dataset; offline (not cached) that is one error line, nothing played."""
    before = snapshot(demo_workdir)
    result = playpen("eval", "mock", "-g", "wordecho", "-r", "ev")
    assert result.code == 2, result
    [line] = _error_lines(result)
    assert "colab-potsdam/playpen-data" in line and "Couldn't reach" in line  # datasets.load_dataset's own error
    assert "--split_source FILE" in line and "--all_instances" in line
    assert snapshot(demo_workdir) == before


def test_eval_plays_the_validation_split_and_records_it(demo_workdir, playpen):
    result = playpen("eval", "mock", "-g", "wordecho", "--split_source", DEMO_SPLIT_FILE, "-r", "ev")
    assert result.code == 0, result
    val = json.loads((demo_workdir / "ev" / "mock.val.json").read_text())
    assert (val["clemscore"], val["statscore"]) == (100.0, None)  # upstream's two keys, first
    assert list(val)[:2] == ["clemscore", "statscore"]
    assert val["split_source"] == str(DEMO_SPLIT_FILE) and val["split"] == "validation"
    assert val["instances"] == {"wordecho": VALIDATION} and val["games"]["wordecho"]["episodes"] == 12
    assert val["leaderboard_comparable"] is False
    assert any("not split 'validation' of colab-potsdam/playpen-data" in r for r in val["not_comparable_because"])
    played = demo_workdir / "ev" / "clem" / "mock" / "wordecho"
    assert sorted(p.name for p in played.iterdir() if p.is_dir()) == ["heldout"]  # no train instance played
    assert len(list(played.glob("heldout/instance_*/scores.json"))) == 12
    assert "not comparable with the playpen leaderboard" in result.out


def test_all_instances_plays_every_instance_and_says_so(demo_workdir, playpen):
    result = playpen("eval", "mock", "-g", "wordecho", "--all_instances", "-r", "ev")
    assert result.code == 0, result
    val = json.loads((demo_workdir / "ev" / "mock.val.json").read_text())
    assert val["all_instances"] is True and val["split"] is None and val["split_source"] is None
    assert len(val["instances"]["wordecho"]) == 60 and val["games"]["wordecho"]["episodes"] == 60
    assert val["leaderboard_comparable"] is False and "--all_instances" in val["not_comparable_because"][0]


def _rows(split: str = "validation") -> list[dict]:
    return [json.loads(line) for line in DEMO_SPLIT_FILE.read_text().splitlines()
            if json.loads(line)["split"] == split]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


BAD_SOURCES = {
    "no task_id column": ([{"game": "wordecho", "experiment": "heldout", "split": "validation"}], [],
                          "has no column 'task_id'"),
    "split it does not have": (None, ["--split", "test"], "has no split 'test' (splits: train, validation)"),
    "unknown experiment": ([{"game": "wordecho", "experiment": "nosuchexp", "task_id": 0, "split": "validation"}],
                           [], "names 1 instance(s) of wordecho that its instances file"),
    "unknown id": ([{"game": "wordecho", "experiment": "heldout", "task_id": 99, "split": "validation"}], [],
                   "heldout/99"),
    "no rows of the game": ([{"game": "other", "experiment": "x", "task_id": 0, "split": "validation"}], [],
                            "has no instances of wordecho"),
    "all instances and a split": (None, ["--all_instances", "--split", "train"], "drop --split/--split_source"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_bad_split_sources_are_one_error_line_and_nothing_is_played(demo_workdir, playpen, case):
    rows, extra, message = BAD_SOURCES[case]
    source = _write_jsonl(demo_workdir / "split.jsonl", rows) if rows else DEMO_SPLIT_FILE
    before = snapshot(demo_workdir)
    result = playpen("eval", "mock", "-g", "wordecho", "--split_source", source, *extra, "-r", "ev")
    assert result.code == 2, result
    [line] = _error_lines(result)
    assert message in line, line
    assert snapshot(demo_workdir) == before and not (demo_workdir / "ev").exists()


def test_a_game_of_the_split_missing_from_the_registry_is_an_error(workdir, playpen):
    add_game_variant(workdir, "clemecho", "pass")
    set_benchmark(workdir, "clemecho", "2.0")
    rows = [dict(row, game="clemecho") for row in _rows()] + [dict(_rows()[0], game="nosuchgame")]
    source = _write_jsonl(workdir / "split.jsonl", rows)
    before = snapshot(workdir)
    result = playpen("eval", "mock", "--suite", "clem", "--split_source", source, "-r", "ev")
    assert result.code == 2, result
    [line] = _error_lines(result)
    assert "missing from the game registry: nosuchgame" in line
    assert snapshot(workdir) == before
    # with -g only that game is played; the other rows are reported, not silently dropped
    result = playpen("eval", "mock", "-g", "clemecho", "--split_source", source, "-r", "ev-one")
    assert result.code == 0, result
    assert "also names game(s) missing from the game registry: nosuchgame; -g plays only clemecho" in result.out
    # without the stray row the suite plays exactly the split's instances
    _write_jsonl(source, rows[:-1])
    assert playpen("eval", "mock", "--suite", "clem", "--split_source", source, "-r", "ev").code == 0
    val = json.loads((workdir / "ev" / "mock.val.json").read_text())
    assert val["instances"] == {"clemecho": VALIDATION} and val["clemscore"] == 100.0


def test_json_and_csv_split_files_give_the_same_split(tmp_path):
    from playpen.splits import load_split

    rows = [json.loads(line) for line in DEMO_SPLIT_FILE.read_text().splitlines()]
    (tmp_path / "split.json").write_text(json.dumps(rows))
    (tmp_path / "split.csv").write_text("game,experiment,task_id,split\n"
                                        + "".join(f"{r['game']},{r['experiment']},{r['task_id']},{r['split']}\n"
                                                  for r in rows))
    splits = [load_split(str(path), "train") for path in (DEMO_SPLIT_FILE, tmp_path / "split.json",
                                                            tmp_path / "split.csv")]
    assert {len(split.instances) for split in splits} == {48}
    assert splits[0].instances == splits[1].instances == splits[2].instances


def test_a_saved_copy_of_the_hub_dataset_is_a_split_source(demo_workdir, playpen, tmp_path):
    """An offline machine uses a save_to_disk copy (a DatasetDict of splits, as the hub serves it)."""
    import datasets

    columns = ("game", "experiment", "task_id")
    splits = {name: datasets.Dataset.from_list([{c: row[c] for c in columns} for row in _rows(name)])
              for name in ("train", "validation")}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "playpen-data"))
    result = playpen("eval", "mock", "-g", "wordecho", "--split_source", tmp_path / "playpen-data", "-r", "ev")
    assert result.code == 0, result
    assert json.loads((demo_workdir / "ev" / "mock.val.json").read_text())["instances"] == {"wordecho": VALIDATION}
    result = playpen("eval", "mock", "-g", "wordecho", "--split_source", tmp_path / "playpen-data", "--split", "test")
    assert result.code == 2 and "has no split 'test' (splits: train, validation)" in result.err


def test_a_hub_split_source_goes_through_datasets_load_dataset(monkeypatch):
    """Any hub id is read with datasets.load_dataset (config 'instances' / 'instances-static'); offline and
    not cached it is SplitSourceUnreadable, which eval turns into the error above."""
    from playpen.splits import SplitSourceUnreadable, load_split

    with pytest.raises(SplitSourceUnreadable, match="config 'instances-static'.*Couldn't reach 'someorg/splits'"):
        load_split("someorg/splits", "validation", ["static"])


def test_to_instances_filter_selects_clemcore_instances_from_a_dataset(tmp_path, demo_workdir):
    """The exported filter works on a datasets.Dataset (saved and reloaded) and on clemcore's instance rows."""
    import datasets
    from clemcore.clemgame import GameInstances, GameRegistry

    from playpen import PlaypenError, to_instances_filter

    rows = [{"game": r["game"], "experiment": r["experiment"], "task_id": r["task_id"]} for r in _rows()[:5]]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    dataset = datasets.load_from_disk(str(tmp_path / "ds"))
    spec = GameRegistry.from_directories_and_cwd_files().get_game_spec("wordecho")
    kept = GameInstances.from_game_spec(spec).filter(to_instances_filter(dataset))
    assert sorted((row["experiment"]["name"], row["game_instance"]["game_id"]) for row in kept) == \
        [("heldout", game_id) for game_id in range(5)]
    with pytest.raises(PlaypenError, match="has no task_id"):
        to_instances_filter([{"game": "wordecho", "experiment": "heldout"}])
