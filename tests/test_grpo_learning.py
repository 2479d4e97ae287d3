"""Evidence that grpo_qlora learns in interaction: on CPU, a tiny model that an early SFT checkpoint
taught wordecho only part of the way (held-out, greedy: some episodes aborted, about half of the words
echoed) plays the train split, and the held-out clemscore and % played that ``playpen eval``
(clemcore) computes rise above the starting policy's."""
from __future__ import annotations

import json

import pytest

from playpen_tune.quickstart import GAME_ARGS, SFT_ARGS

START_SFT_STEPS = 100  # an early SFT checkpoint: the answer format most of the time, the word about half the time
# The recipe for the tiny model: sample close to greedy (its logits are nearly flat: at temperature 0.3 most
# sampled episodes fail, at >= 0.5 nearly all abort), 8 episodes per group, two groups per step, Main Score
# plus a format term (an aborted episode scores below a lost one), a small learning rate (TRL divides the
# logits by the temperature in the loss, so 1/T scales the updates; at 5e-4 clemscore fell).
GRPO_ARGS = ["--temperature", "0.1", "--num_generations", "8", "--per_device_train_batch_size", "16",
             "--max_tokens", "8", "--learning_rate", "2e-4", "--beta", "0", "--max_steps", "30",
             "--reward", "main_score", "--format_reward", "0.5", "--logging_steps", "1", "--save_steps", "100"]


@pytest.mark.slow
def test_grpo_raises_heldout_clemscore_above_the_starting_policy(playpen, tmp_path, monkeypatch):
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
    # the policy plays the held-out instances better than where it started: more words echoed, no more aborts
    assert after["clemscore"] > before["clemscore"], (before, after)
    assert after["games"]["wordecho"]["% played"] >= before["games"]["wordecho"]["% played"], (before, after)
    # the rise came from groups whose episodes clemcore scored differently (GRPO's learning signal)
    manifest = json.loads((tmp_path / "models" / "start-grpo_qlora" / "playpen_run.json").read_text())
    assert any(entry["varied_groups"] > 0 for entry in manifest["reward_history"])
