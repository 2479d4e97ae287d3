"""Preference pairs from episodes that clemcore really played: the expert vs a random tiny model."""
from __future__ import annotations

import pytest


@pytest.fixture
def two_runs(workdir):
    """wordecho's train instances played by clemcore's scripted expert and by the random tiny model."""
    from playpen_tune.games import play, write_game_registry

    write_game_registry(workdir)
    results = workdir / "results"
    play(["mock"], results, instances="instances_train")
    play(["tiny"], results, instances="instances_train", batch_size=8, gen_args={"max_tokens": 6})
    return results


def test_pairs_from_expert_and_model_episodes(two_runs):
    from playpen_tune.data import load_preference_dataset

    dataset, report = load_preference_dataset([str(two_runs)])
    assert len(dataset) == 48  # one pair per train instance: expert won, the random model aborted
    source = report.sources[0]
    assert source["kind"] == "transcripts" and source["examples"] == 48
    for pair in dataset:
        prompt, chosen, rejected = pair["prompt"], pair["chosen"], pair["rejected"]
        assert [m["role"] for m in prompt] == ["user"]
        word = prompt[-1]["content"].rsplit("Say the word: ", 1)[1]
        assert chosen == [{"role": "assistant", "content": f"ANSWER: {word}"}]
        assert rejected[0]["role"] == "assistant" and rejected[0]["content"] != chosen[0]["content"]


def test_single_runs_give_no_pairs_and_say_why(two_runs):
    from playpen.errors import PlaypenError
    from playpen_tune.data import load_preference_dataset

    with pytest.raises(PlaypenError, match="single episode 48"):
        load_preference_dataset([str(two_runs / "mock")])
