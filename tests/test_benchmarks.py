"""The benchmark scripts run (``--quick``, tiny inputs, in a subprocess) and write well-formed JSON.

No timing is asserted: only that every script finishes, the keys are there, the numbers are
finite, and every reported summary, ratio and verdict is what the stored per-run values give
(recomputed here with ``statistics``, not with the scripts' helpers). The statistics helpers are
unit-tested directly.
"""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_common():
    """benchmarks/common.py under a private name (the scripts import it as ``common``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_playpen_benchmarks_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()


def run_script(name: str, tmp_path: Path, *args: str, timeout: int = 300, env: dict | None = None) -> dict:
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    document = json.loads(out.read_text())
    assert document["benchmark"] == name
    assert document["environment"]["versions"]["torch"]
    assert isinstance(document["config"], dict) and isinstance(document["results"], dict)
    return document


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def assert_summary(stats: dict, positive: bool = True) -> None:
    assert set(stats) >= {"median", "min", "max", "n", "values"}, stats
    assert stats["n"] >= 1 and all(finite(stats[k]) for k in ("median", "min", "max")), stats
    assert stats["min"] <= stats["median"] <= stats["max"]
    if positive:
        assert stats["min"] > 0, stats


def assert_ratio(comparison: dict) -> None:
    assert finite(comparison["ratio"]) and comparison["ratio"] > 0, comparison
    assert finite(comparison["paired_min"]) and finite(comparison["paired_max"]), comparison
    assert comparison["paired_min"] <= comparison["paired_max"]


def assert_summary_of(stats: dict, values: list) -> None:
    """``stats`` summarises exactly ``values`` (the per-run numbers stored next to it)."""
    assert_summary(stats)
    assert stats["values"] == values and stats["n"] == len(values)
    assert stats["median"] == pytest.approx(statistics.median(values))
    assert (stats["min"], stats["max"]) == (min(values), max(values))


def assert_ratio_of(comparison: dict, numerator: list, denominator: list) -> None:
    """``comparison`` is median over median of the per-run values, with the paired per-round min/max."""
    assert_ratio(comparison)
    paired = [a / b for a, b in zip(numerator, denominator, strict=True)]
    assert comparison["ratio"] == pytest.approx(statistics.median(numerator) / statistics.median(denominator))
    assert (comparison["paired_min"], comparison["paired_max"]) == pytest.approx((min(paired), max(paired)))
    assert comparison["pairs"] == len(paired)


# ----------------------------------------------------------------------------- helpers

def test_summary_and_ratios():
    stats = common.summary([3.0, 1.0, 2.0, None, float("nan")])
    assert (stats["median"], stats["min"], stats["max"], stats["n"]) == (2.0, 1.0, 3.0, 3)
    assert common.summary([])["median"] is None
    comparison = common.compare([2.0, 4.0, 6.0], [1.0, 2.0, 2.0])
    assert comparison["ratio"] == pytest.approx(2.0)  # median 4 / median 2
    assert (comparison["paired_min"], comparison["paired_max"], comparison["pairs"]) == (2.0, 3.0, 3)
    assert common.compare([1.0], [0.0])["ratio"] is None


def test_interleave_rotates_and_drops_warmup():
    order = []
    results = common.interleave({"a": lambda: order.append("a") or "A", "b": lambda: order.append("b") or "B",
                                 "c": lambda: order.append("c") or "C"}, runs=3, warmup=1)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert results == {"a": ["A"] * 3, "b": ["B"] * 3, "c": ["C"] * 3}


def test_json_has_no_nan(tmp_path):
    import argparse

    args = argparse.Namespace(quick=True, runs=1, threads=1)
    document = common.write_json(tmp_path / "x.json", "x", args, {}, {"a": float("nan"), "b": [float("inf"), 1.0]})
    assert document["results"] == {"a": None, "b": [None, 1.0]}
    assert json.loads((tmp_path / "x.json").read_text())["results"]["b"] == [None, 1.0]


# ----------------------------------------------------------------------------- scripts

def test_cli_latency(tmp_path):
    document = run_script("cli_latency", tmp_path, "--quick", "--runs", "2")
    results = document["results"]
    seconds = results["seconds"]
    assert set(seconds) == {"playpen --help", "playpen list learners", "clem --help"}
    for stats in seconds.values():
        assert len(stats["values"]) == 2
        assert_summary_of(stats, stats["values"])
    assert set(results["ratios"]) == {"clem --help / playpen --help", "clem --help / playpen list learners"}
    for name, comparison in results["ratios"].items():
        assert_ratio_of(comparison, seconds["clem --help"]["values"], seconds[name.split(" / ")[1]]["values"])
    assert results["target_met"] is all(c["ratio"] >= results["target_ratio"] for c in results["ratios"].values())


def test_gpu_qlora_skips_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the real benchmark would run")
    document = run_script("gpu_qlora", tmp_path, timeout=120)
    assert document["results"]["skipped"] is True and "CUDA" in document["results"]["reason"]


@pytest.mark.slow
def test_gpu_qlora_smoke(tmp_path):
    document = run_script("gpu_qlora", tmp_path, "--smoke", "--variants", "gc+pad,gc+packing", "--steps", "4")
    variants = document["results"]["variants"]
    assert set(variants) == {"gc+pad", "gc+packing"}
    for result in variants.values():
        assert result["steps_done"] == 4 and result["steps_measured"] == 2
        assert_summary(result["tokens_per_gpu_per_s"])
        assert finite(result["peak_memory_gib"]) and finite(result["tokens_per_gpu_per_s_aggregate"])
    assert variants["gc+packing"]["padding_fraction"] == 0
    assert finite(document["results"]["ratios_vs_gc+pad"]["gc+packing"]["tokens_per_gpu_per_s"])
    assert len(document["results"]["anchors"]) == 2
    assert document["config"]["build"]["parameters"] > 0


@pytest.mark.slow
def test_learner_overhead(tmp_path):
    document = run_script("learner_overhead", tmp_path, "--quick", "--steps", "3", "--examples", "12")
    results = document["results"]
    runs = results["runs"]
    per_run = {variant: {m: [run[m] for run in runs[variant]] for m in ("end_to_end_s", "train_s", "setup_s",
                                                                         "finish_s")} for variant in runs}
    assert set(runs) == {"playpen", "trl"} and len(runs["playpen"]) == len(runs["trl"]) >= 1
    for variant in ("playpen", "trl"):
        for measure, values in per_run[variant].items():
            assert_summary_of(results["seconds"][variant][measure], values)
        assert results["losses_first_run"][variant] == runs[variant][0]["losses"]
        assert len(results["losses_first_run"][variant]) >= 1
    for measure in ("end_to_end_s", "train_s"):
        assert_ratio_of(results["ratios"][measure], per_run["playpen"][measure], per_run["trl"][measure])
        assert results["target_met"][measure] is (results["ratios"][measure]["ratio"] <= results["target_ratio"])
    runs = zip(per_run["playpen"]["end_to_end_s"], per_run["trl"]["end_to_end_s"], strict=True)
    differences = [p - t for p, t in runs]
    assert results["overhead_s"]["median"] == pytest.approx(statistics.median(differences))
    assert document["config"]["max_steps"] == 3


@pytest.mark.slow
def test_packing(tmp_path, evaluation_files, relay_results):
    """On the fixtures' data, laid out as the benchmark expects its data directory."""
    import os
    import shutil

    data = tmp_path / "data"
    (data / "clembench-evaluation").mkdir(parents=True)
    shutil.copyfile(evaluation_files["sft"], data / "clembench-evaluation" / "sft_dataset_559.json")
    shutil.copytree(relay_results, data / "clembench-transcripts" / "results")
    document = run_script("packing", tmp_path, "--quick", "--limit", "40", "--max_length", "320",
                          env=dict(os.environ, PLAYPEN_SHARED_DATA=str(data)))
    results = document["results"]
    assert set(results["stats"]) == {"padded", "packing", "padding_free"}
    for stats in results["stats"].values():
        for measure in ("real_tokens_per_s", "trained_tokens_per_s", "train_s", "peak_memory_mib",
                        "final_train_loss", "heldout_loss", "optimizer_steps"):
            assert_summary(stats[measure])
    for variant in ("packing", "padding_free"):
        for measure in ("real_tokens_per_s", "trained_tokens_per_s", "peak_memory_mib", "heldout_loss"):
            assert_ratio(results["ratios_vs_padded"][variant][measure])
    assert results["stats"]["packing"]["padding_fraction"]["median"] == 0
    assert results["stats"]["padded"]["padding_fraction"]["median"] > 0
    run = results["runs"]["padding_free"][0]
    assert run["collator_swapped_to_padding_free"] is True
    # the same examples are trained by every variant (one epoch)
    trained = {v: r[0]["trained_tokens"] for v, r in results["runs"].items()}
    assert trained["padded"] == trained["padding_free"] > 0


@pytest.mark.slow
def test_eval_throughput(tmp_path):
    document = run_script("eval_throughput", tmp_path, "--quick", "--batch_sizes", "1,4")
    results = document["results"]
    rates = {name: [run["episodes_per_min"] for run in runs] for name, runs in results["runs"].items()}
    assert set(results["stats"]) == set(rates) == {"batch 1", "batch 4"} and results["baseline"] == "batch 1"
    for name, stats in results["stats"].items():
        assert_summary_of(stats["episodes_per_min"], rates[name])
        assert stats["episodes"]["median"] == 12  # instances_heldout
    assert_ratio_of(results["ratios_vs_baseline"]["batch 4"], rates["batch 4"], rates["batch 1"])
    assert 0 <= results["identical_responses_vs_baseline"]["batch 4"] <= 1
    # the smallest batch size whose median rate is within 5% of the fastest median
    medians = {int(name.split()[-1]): statistics.median(values) for name, values in rates.items()}
    assert results["recommended_batch_size"] == min(b for b, m in medians.items() if m >= 0.95 * max(medians.values()))


@pytest.mark.slow
def test_rollout_throughput(tmp_path):
    document = run_script("rollout_throughput", tmp_path, "--quick", "--group_sizes", "1,4")
    results = document["results"]
    rates = {name: [run["episodes_per_s"] for run in runs] for name, runs in results["runs"].items()}
    assert set(results["stats"]) == set(rates) == {"G=1", "G=4", "sequential"}
    for name, stats in results["stats"].items():
        assert_summary_of(stats["episodes_per_s"], rates[name])
    baseline = results["baseline"]
    for name in set(rates) - {baseline}:
        assert_ratio_of(results["ratios_vs_baseline"][name], rates[name], rates[baseline])


@pytest.mark.slow
def test_learner_overhead_on_a_model_directory_with_profile_lengths_and_the_peft_floor(tmp_path, tiny_model_dir):
    """The real-model form of the benchmark (``--model_dir``, ``--profile``) with its third variant, plain peft."""
    profile = tmp_path / "profile.jsonl"
    profile.write_text("".join(json.dumps({"game": "g", "outcome": "success",
                                           "turns": [["u", 40 + 30 * i], ["a", 12 + 3 * i]]}) + "\n" for i in range(8)))
    document = run_script("learner_overhead", tmp_path, "--quick", "--steps", "2", "--examples", "8",
                          "--model_dir", str(tiny_model_dir), "--profile", str(profile), "--max_length", "96",
                          "--variants", "peft")
    results = document["results"]
    assert set(results["runs"]) == {"playpen", "trl", "peft"}
    assert document["config"]["model"] == str(tiny_model_dir) and "length profile" in document["config"]["data_source"]
    for variant, runs in results["runs"].items():
        for run in runs:
            assert run["tokens"] > 0 and run["tokens_per_s"] == pytest.approx(run["tokens"] / run["train_s"])
        assert_summary_of(results["seconds"][variant]["tokens_per_s"], [run["tokens_per_s"] for run in runs])
    for variant in ("playpen", "trl"):
        assert_ratio_of(results["over_peft_floor"][f"{variant}_over_peft_step_s"],
                        [run["step_s"] for run in results["runs"][variant]],
                        [run["step_s"] for run in results["runs"]["peft"]])


def test_step_costs_times_each_suspect_against_the_default_step_on_the_same_batches(tmp_path, tiny_model_dir):
    """One variant per suspect (TRL's metrics, the fused head, checkpointing, the 4-bit kernel, threads), each
    a ratio to playpen's default step per round; every 4-bit variant computes the same loss."""
    document = run_script("step_costs", tmp_path, "--quick", "--runs", "2", "--model_dir", str(tiny_model_dir),
                          "--max_length", "64")
    results = document["results"]
    assert set(results["runs"]) == {"default", "no_metrics", "plain_head", "no_checkpointing", "fp32_base",
                                    "threads_2"}
    tokens = document["config"]["tokens_per_run"]
    for variant, runs in results["runs"].items():
        assert len(runs) == 2
        for run in runs:
            assert run["tokens_per_s"] == pytest.approx(tokens / (run["step_s"] * document["config"]["steps"]))
        assert_summary_of(results["seconds_and_tokens"][variant]["step_s"], [run["step_s"] for run in runs])
        if variant != "default":
            assert_ratio_of(results["step_time_over_default"][variant], [run["step_s"] for run in runs],
                            [run["step_s"] for run in results["runs"]["default"]])
    losses = results["first_loss"]
    assert len({round(loss, 5) for name, loss in losses.items() if name != "fp32_base"}) == 1, losses
    assert losses["fp32_base"] == pytest.approx(losses["default"], rel=0.01)  # NF4 rounding of the same weights


@pytest.mark.slow
def test_engine_throughput(tmp_path, vllm_base, vllm_server):
    """hf vs vLLM (the session's server of the tiny vLLM model), base and tuned: rates, ratios, answer shares."""
    document = run_script("engine_throughput", tmp_path, "--quick", "--model_dir", str(vllm_base),
                          "--vllm_url", vllm_server.url, "--batch_size", "4")
    results = document["results"]
    rates = {name: [run["episodes_per_s"] for run in runs] for name, runs in results["runs"].items()}
    assert set(results["stats"]) == set(rates) == {"hf bench", "vllm bench", "hf bench-lora", "vllm bench-lora"}
    for name, stats in results["stats"].items():
        assert_summary_of(stats["episodes_per_s"], rates[name])
        assert stats["episodes"]["median"] == 12  # instances_heldout
    for model in ("bench", "bench-lora"):
        assert_ratio_of(results["ratios_vllm_vs_hf"][model], rates[f"vllm {model}"], rates[f"hf {model}"])
        # the tiny base answers alike whatever the prompt, so equal answers prove little here (the parity of
        # the engines is tests/test_vllm_engine.py's, with an adapter that makes the answers differ)
        assert 0 <= results["same_answers_as_hf"][model] <= 1


PARITY_GAME = Path(__file__).resolve().parent / "data" / "games" / "parity"
PARITY_SPLIT = ["--train_ids", ",".join(f"two_rounds/{i}" for i in range(6)),
                "--heldout_ids", "two_rounds/6,two_rounds/7"]


def run_efficacy(tmp_path: Path, tiny_model_dir: Path, *args: str, timeout: int = 600) -> dict:
    """efficacy.py on the tiny model and the test game ``parity`` (the scripted player wins it, a random model
    wins about half of the rounds), workspace kept under tmp_path/ws."""
    return run_script("efficacy", tmp_path, "--model_dir", str(tiny_model_dir), "--game_registry", str(PARITY_GAME),
                      "-g", "parity", *PARITY_SPLIT, "--workdir", str(tmp_path / "ws"), "--quick", "--max_tokens", "4",
                      *args, timeout=timeout)


def assert_arm_is_its_val_json(arm: dict, workspace: Path) -> None:
    """The arm's numbers are those of the val.json that its last command, ``playpen eval``, wrote."""
    val = json.loads((workspace / arm["eval"]["val_json"]).read_text())
    assert arm["commands"][-1]["command"].startswith(f"playpen eval {arm['model']} -g parity --split_source ")
    assert arm["eval"]["clemscore"] == val["clemscore"] and arm["eval"]["failed_games"] == {}
    assert arm["eval"]["games"] == {"parity": {key: val["games"]["parity"][key]
                                               for key in ("% played", "quality score", "episodes")}}
    assert val["games"]["parity"]["episodes"] == 2  # the two held-out instances


@pytest.mark.slow
def test_efficacy_records_each_arms_commands_and_its_playpen_eval_numbers(tmp_path, tiny_model_dir):
    answers = tmp_path / "answers.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Round {i}: answer with any text."},
                          {"role": "assistant", "content": "even"}]} for i in range(5)]
    answers.write_text("".join(json.dumps(row) + "\n" for row in rows))
    document = run_efficacy(tmp_path, tiny_model_dir, "--arms", "base,sft", "--sft_steps", "1",
                            "--dataset", str(answers))
    workspace = tmp_path / "ws"
    config, arms = document["config"], document["results"]["arms"]
    assert config["split_counts"] == {"train": 6, "validation": 2} and config["sizes"]["sft_steps"] == 1
    assert document["results"]["setup"]["commands"][0]["command"] == f"playpen register base --model {tiny_model_dir}"
    assert list(arms) == ["base", "sft"]
    for arm in arms.values():
        assert all(c["ok"] and c["wall_s"] > 0 for c in arm["commands"]) and "error" not in arm
        assert arm["wall_s"] == pytest.approx(sum(c["wall_s"] for c in arm["commands"]), abs=0.2)
        assert_arm_is_its_val_json(arm, workspace)
    learn = arms["sft"]["commands"][0]["command"]
    assert learn.startswith(f"playpen learn -l sft_qlora -m base --dataset {answers} --split_source {workspace}")
    assert "--max_steps 1" in learn and "--seed 42" in learn and "--name base-sft" in learn
    learned = arms["sft"]["learned"]
    manifest = json.loads((workspace / "models" / "base-sft" / "playpen_run.json").read_text())
    assert learned["learner"] == "sft_qlora" and learned["steps"] == 1
    assert learned["examples"] == manifest["data"]["total"] == 5
    # the commands run again as recorded, from the workspace
    assert (workspace / "split.jsonl").is_file() and (workspace / "game_registry.json").is_file()


@pytest.mark.slow
@pytest.mark.long
def test_efficacy_dpo_on_episode_and_turn_level_pairs_and_grpo(tmp_path, tiny_model_dir):
    """Every arm on the tiny model: DPO finds pairs in the sampled SFT play (-n) and in its branch trees, GRPO
    records its reward history. Numbers mean nothing here; their plumbing does."""
    document = run_efficacy(tmp_path, tiny_model_dir, "--arms", "sft,dpo,dpo_turn,grpo", "--expert", "mock",
                            "--temperature", "1.0",
                            "--grpo_args", "--temperature 1.0 --reward success",
                            "--grpo_args", "--temperature 1.0 --per_device_train_batch_size 4",
                            timeout=1800)
    workspace, arms = tmp_path / "ws", document["results"]["arms"]
    assert list(arms) == ["sft", "dpo", "dpo_turn", "grpo_1", "grpo_2"]
    play, learn = (c["command"] for c in arms["sft"]["commands"][:2])
    assert play.startswith("playpen play mock -g parity") and "-r expert-transcripts" in play
    assert learn.startswith("playpen learn -l sft_qlora -m base --dataset expert-transcripts")
    assert arms["sft"]["learned"]["examples"] == 6  # the scripted player won the 6 train instances
    for name in ("dpo", "dpo_turn", "grpo_1", "grpo_2"):
        assert "error" not in arms[name], arms[name]
        assert_arm_is_its_val_json(arms[name], workspace)
        assert arms[name]["learned"]["parent_adapter"] == str(workspace / "models" / "base-sft")
    assert "-n 2" in arms["dpo"]["commands"][0]["command"]
    assert "--branching 2 --max_branches 4" in arms["dpo_turn"]["commands"][0]["command"]
    episode_pairs = arms["dpo"]["learned"]["sources"][0]["pairs"]
    turn_pairs = arms["dpo_turn"]["learned"]["sources"][0]["pairs"]
    assert episode_pairs["turn_level"] == 0 and episode_pairs["episode"] == arms["dpo"]["learned"]["pairs_trained"] > 0
    assert turn_pairs["episode"] == 0 and turn_pairs["turn_level"] == arms["dpo_turn"]["learned"]["pairs_trained"] > 0
    for name, setting in (("grpo_1", "--temperature 1.0 --reward success"),
                          ("grpo_2", "--temperature 1.0 --per_device_train_batch_size 4")):
        manifest = json.loads((workspace / "models" / f"base-sft-{name}" / "playpen_run.json").read_text())
        assert arms[name]["setting"] == setting and arms[name]["commands"][0]["command"].endswith(setting)
        assert arms[name]["reward_history"] == manifest["reward_history"] and len(manifest["reward_history"]) == 1
    assert manifest["config"]["per_device_train_batch_size"] == 4  # the arm's setting overrode the default


def test_efficacy_refuses_arms_without_the_sft_they_start_from(tmp_path, tiny_model_dir):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "efficacy.py"), "--model_dir", str(tiny_model_dir),
                           "--arms", "base,grpo", "--out", str(tmp_path / "e.json")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0 and not (tmp_path / "e.json").exists()
    assert done.stderr.strip().splitlines()[-1] == ("error: the arms grpo start from the SFT model: add sft to --arms")
