"""Evidence that grpo_qlora learns in interaction: on CPU, a tiny model that an early SFT checkpoint
taught wordecho's answer format most of the time (and rarely to echo the word) plays the train split,
and the held-out % played that ``playpen eval`` (clemcore) computes rises above the starting policy's.
(Held-out clemscore does not rise with this recipe: see the README's grpo_qlora section.)"""
from __future__ import annotations

import json

import pytest

from playpen_tune.quickstart import GAME_ARGS, SFT_ARGS

START_SFT_STEPS = 80  # an early SFT checkpoint: the answer format most of the time, the word rarely
# The recipe for the tiny model: sample close to greedy (at temperature >= 0.5 the tiny model samples
# near-uniformly, every episode aborts and a group's rewards never differ), 8 episodes per group,
# Main Score plus a format term, so that an aborted episode scores below a lost one.
GRPO_ARGS = ["--temperature", "0.3", "--num_generations", "8", "--per_device_train_batch_size", "16",
             "--max_tokens", "8", "--learning_rate", "5e-4", "--beta", "0", "--max_steps", "15",
             "--reward", "main_score", "--format_reward", "0.5", "--logging_steps", "1", "--save_steps", "100"]


@pytest.mark.slow
def test_grpo_raises_heldout_played_share_above_the_starting_policy(playpen, tmp_path, monkeypatch):
    from playpen import registry
    from playpen_tune.games import demo_corpus, write_game_registry
    from playpen_tune.tiny import build_tiny_chat_model, registry_entry

    monkeypatch.chdir(tmp_path)
    registry.upsert_entry(registry_entry("tiny-base", build_tiny_chat_model(
        tmp_path / "base", corpus=demo_corpus(), hidden_size=128)))
    write_game_registry(tmp_path)

    def run(*args):
        result = playpen(*args)
        assert result.code == 0, result
        return result

    def heldout(model: str) -> dict:
        run("eval", model, "-r", "eval", *GAME_ARGS, "-L", "8")  # greedy, the validation split
        return json.loads((tmp_path / "eval" / f"{model}.val.json").read_text())

    run("play", "mock", *GAME_ARGS, "-r", "transcripts")
    run("learn", "-l", "sft_qlora", "-m", "tiny-base", "--dataset", "transcripts", "--name", "start",
        "--max_steps", str(START_SFT_STEPS), *GAME_ARGS[2:], *SFT_ARGS)
    before = heldout("start")
    run("learn", "-l", "grpo_qlora", "-m", "start", *GAME_ARGS, *GRPO_ARGS)
    after = heldout("start-grpo_qlora")

    print("held-out (playpen eval): " + " -> ".join(
        f"{name} clemscore {scores['clemscore']}, % played {scores['games']['wordecho']['% played']}"
        for name, scores in (("start", before), ("after GRPO", after))))
    assert before["failed_games"] == {} and after["failed_games"] == {}
    # the policy learned to keep the game's format: more held-out episodes played to the end (not aborted)
    assert after["games"]["wordecho"]["% played"] > before["games"]["wordecho"]["% played"], (before, after)
    # the rise came from groups whose episodes clemcore scored differently (GRPO's learning signal)
    manifest = json.loads((tmp_path / "models" / "start-grpo_qlora" / "playpen_run.json").read_text())
    assert any(entry["varied_groups"] > 0 for entry in manifest["reward_history"])
