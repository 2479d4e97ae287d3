"""`playpen play MODEL --branching K`: each instance played as a tree of episodes scored by clemcore, and
`dpo_qlora --dataset DIR` pairing the sibling branches of each branching point that scored differently."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import snapshot

PARITY = ["-g", "parity", "--split_source", "parity-splits.jsonl"]


def leaf_score(leaf: Path) -> float:
    """clemcore's Main Score of a leaf episode; an aborted one (NaN) counts 0."""
    score = json.loads((leaf / "scores.json").read_text())["episode scores"]["Main Score"]
    return 0.0 if score is None or math.isnan(score) else score


def answers(leaf: Path) -> list[str]:
    turns = json.loads((leaf / "interactions.json").read_text())["turns"]
    return [event["action"]["content"] for round_ in turns for event in round_
            if event["action"]["type"] == "get message"]


def expected_pairs(trees: list[Path]) -> list[tuple[str, str]]:
    """(chosen, rejected) answers per branching point, worked out from the files on disk."""
    pairs = []
    for tree in trees:
        by_point: dict = {}
        for leaf in sorted(tree.parent.glob("branch_*")):
            for step in json.loads((leaf / "branch.json").read_text())["path"]:
                branch = by_point.setdefault(step["point"], {}).setdefault(step["branch"], [None, []])
                branch[0] = answers(leaf)[step["answer"]]
                branch[1].append(leaf_score(leaf))
        for branches in by_point.values():
            means = sorted(((sum(s) / len(s), answer) for answer, s in branches.values()), reverse=True)
            if means[0][0] != means[-1][0] and means[0][1] != means[-1][1]:
                pairs.append((means[0][1], means[-1][1]))
    return sorted(pairs)


def test_branching_play_writes_scored_trees_and_dpo_learns_turn_level_pairs(parity_workdir, playpen):
    result = playpen("play", "tiny", *PARITY, "-r", "tr", "--branching", "2", "--max_branches", "4", "-T", "1.0",
                     "-L", "4")
    assert result.code == 0, result
    trees = sorted((parity_workdir / "tr" / "clem" / "tiny" / "parity" / "two_rounds").glob("instance_*/tree.json"))
    assert [t.parent.name for t in trees] == [f"instance_{i:05d}" for i in range(6)]  # the train split only
    for path in trees:
        tree = json.loads(path.read_text())
        assert tree["branching_factor"] == 2 and len(tree["leaves"]) <= 4
        # round 1 branches two ways, then round 2 of each (unless an empty answer aborted the episode)
        assert tree["points"]["p0"] == {"parent": None, "branches": 2}
        leaves = sorted(path.parent.glob("branch_*"))
        assert [leaf.name for leaf in leaves] == sorted(tree["leaves"])
        assert all((leaf / "scores.json").is_file() for leaf in leaves)  # every leaf scored by clemcore
    summary = json.loads((parity_workdir / "tr" / "tiny.play.json").read_text())
    assert summary["branching"] == {"factor": 2, "max_branches": 4}
    assert summary["episodes"]["parity"] == sum(len(json.loads(t.read_text())["leaves"]) for t in trees)

    files = snapshot(parity_workdir / "tr" / "clem")
    again = playpen("play", "tiny", *PARITY, "-r", "tr", "--branching", "2", "--max_branches", "4", "-T", "1.0",
                    "-L", "4")
    assert again.code == 0, again
    assert snapshot(parity_workdir / "tr" / "clem") == files  # finished trees are not played again

    learn = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", "tr", "--split_source",
                    "parity-splits.jsonl", "--max_steps", "1", "--per_device_train_batch_size", "2")
    assert learn.code == 0, learn
    data = json.loads((parity_workdir / "models" / "tiny-dpo_qlora" / "playpen_run.json").read_text())["data"]
    pairs = data["sources"][0]["pairs"]
    wanted = expected_pairs(trees)
    assert pairs == {"turn_level": len(wanted), "branching_points": 6 * 3 - _aborted_points(trees), "episode": 0}
    assert data["total"] == len(wanted) > 0
    from playpen_tune.data import load_preference_dataset

    dataset, _ = load_preference_dataset(["tr"])  # the rows dpo_qlora trained on
    assert sorted((row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in dataset) == wanted
    assert all(row["prompt"][-1]["role"] == "user" for row in dataset)


def _aborted_points(trees: list[Path]) -> int:
    """Round-2 points missing because the round-1 answer of that branch was empty (the episode aborted)."""
    return sum(3 - len(json.loads(t.read_text())["points"]) for t in trees)


def test_equal_scores_give_no_pairs(parity_workdir, playpen):
    """The scripted player answers the same in every branch and wins: no branching point gives a pair. An
    unfinished tree (no tree.json: an interrupted run) is played again from scratch."""
    unfinished = parity_workdir / "tr" / "clem" / "mock" / "parity" / "two_rounds" / "instance_00000" / "branch_00009"
    unfinished.mkdir(parents=True)
    (unfinished / "interactions.json").write_text("{}")
    result = playpen("play", "mock", *PARITY, "-r", "tr", "--branching", "2", "-T", "1.0")
    assert result.code == 0, result
    assert not unfinished.exists()
    assert sorted(p.name for p in unfinished.parent.iterdir()) == [
        "branch_00001", "branch_00002", "branch_00003", "branch_00004", "experiment.json", "tree.json"]
    learn = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", "tr", "--split_source",
                    "parity-splits.jsonl")
    assert learn.code == 2 and "0 preference pairs from tr (removed: equal scores 18)" in learn.err, learn


@pytest.mark.parametrize("args, message", [
    (["--branching", "1", "-T", "1"], "--branching must be >= 2"),
    (["--branching", "3", "--max_branches", "2", "-T", "1"], "--max_branches 2 is below --branching 3"),
    (["--branching", "2"], "pass -T above 0"),
    (["--branching", "2", "-T", "1", "-n", "2"], "drop -n"),
    (["--max_branches", "8", "-T", "1"], "pass --branching K too"),
])
def test_bad_branching_input_is_one_error_line_and_writes_nothing(parity_workdir, playpen, args, message):
    before = snapshot(parity_workdir)
    result = playpen("play", "mock", *PARITY, "-r", "tr", *args)
    assert result.code == 2 and result.err.count("error:") == 1 and message in result.err, result
    assert snapshot(parity_workdir) == before


def test_a_game_whose_instances_cannot_be_read_fails_branching_play_too(parity_workdir, playpen):
    """As without --branching: a game without an instances file is a FAILED game in play.json and the exit status."""
    import shutil

    from playpen.files import append_entry

    game = parity_workdir / "games" / "noinstances"
    shutil.copytree(Path(__file__).resolve().parent / "data" / "games" / "parity", game)
    (game / "in" / "instances.json").unlink()
    spec = json.loads((game / "clemgame.json").read_text())
    (game / "clemgame.json").write_text(json.dumps(dict(spec, game_name="noinstances")))
    append_entry({"benchmark_path": str(game)}, parity_workdir / "game_registry.json")
    result = playpen("play", "mock", "-g", "noinstances", "--all_instances", "-r", "tr", "--branching", "2",
                     "-T", "1.0")
    assert result.code == 2 and "some games failed" in result.err, result
    summary = json.loads((parity_workdir / "tr" / "mock.play.json").read_text())
    assert "instances file" in summary["failed_games"]["noinstances"] and summary["episodes"] == {"noinstances": 0}
