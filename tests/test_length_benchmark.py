"""benchmarks/length_profile.py runs on a small length profile made here and its ratios follow from its runs.

No timing is asserted: the JSON's summaries and ratios are recomputed from the per-run values it stores.
"""
from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "length_profile.py"


@pytest.fixture
def profile(tmp_path) -> Path:
    """36 conversations of 1-3 exchanges, 20-600 characters per message (like a clembench profile, smaller)."""
    rng = random.Random(3)
    lines = []
    for n in range(36):
        turns = []
        for _ in range(1 + n % 3):
            turns += [["u", rng.randint(20, 600)], ["a", rng.randint(4, 120)]]
        lines.append(json.dumps({"game": f"game{n % 4}", "outcome": "success", "turns": turns}))
    path = tmp_path / "profile.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)


@pytest.mark.slow
def test_length_profile_benchmark(tmp_path, profile):
    out = tmp_path / "length.json"
    done = run(tmp_path, "--profile", profile, "--examples", "0", "--max_length", "256", "--batch_size", "2", "--runs",
               "2",
               "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["benchmark"] == "length_profile" and document["runs"] == 2
    assert document["config"]["rows"] == 36 and document["config"]["max_length"] == 256
    assert 3.5 < document["config"]["characters_per_token"] < 4.5  # one token per "xyz " word
    results = document["results"]
    runs = results["runs"]
    assert set(runs) == {"padded", "grouped", "padding_free", "packing"}
    for variant, values in runs.items():
        assert len(values) == 2 and all(r["variant"] == variant for r in values)
        for measure in ("real_tokens_per_s", "heldout_loss", "peak_memory_mib"):
            per_run = [r[measure] for r in values]
            assert results["stats"][variant][measure]["median"] == pytest.approx(statistics.median(per_run))
    # every variant trains the same examples once (packing only packs them into fewer rows)
    trained = {v: {r["trained_tokens"] for r in values} for v, values in runs.items()}
    assert trained["padded"] == trained["grouped"] == trained["padding_free"] and len(trained["padded"]) == 1
    for variant in ("grouped", "padding_free", "packing"):
        for measure in ("real_tokens_per_s", "heldout_loss", "peak_memory_mib"):
            mine, base = [r[measure] for r in runs[variant]], [r[measure] for r in runs["padded"]]
            ratio = results["ratios_vs_padded"][variant][measure]
            assert ratio["ratio"] == pytest.approx(statistics.median(mine) / statistics.median(base))
            paired = [a / b for a, b in zip(mine, base, strict=True)]
            assert (ratio["paired_min"], ratio["paired_max"]) == pytest.approx((min(paired), max(paired)))
        assert results["target_met"][variant] == (results["ratios_vs_padded"][variant]["real_tokens_per_s"]["ratio"]
                                                  >= results["target_ratio"])
    ideal = [r["slots"] / r["real_tokens"] for r in runs["padded"]]
    assert results["ideal_ratio"]["median"] == pytest.approx(statistics.median(ideal)) and min(ideal) > 1
    padding = {v: statistics.median(r["padding_fraction"] for r in values) for v, values in runs.items()}
    assert padding["padding_free"] == padding["packing"] == 0 < padding["grouped"] < padding["padded"]


def test_a_missing_profile_or_unknown_variant_is_an_error(tmp_path, profile):
    done = run(tmp_path, "--profile", tmp_path / "missing.jsonl")
    assert done.returncode != 0 and "--profile" in done.stderr
    done = run(tmp_path, "--profile", profile, "--variants", "padded,sorted")
    assert done.returncode != 0 and "unknown sorted" in done.stderr


def test_padding_only_counts_the_whole_profile(tmp_path, profile):
    out = tmp_path / "padding.json"
    done = run(tmp_path, "--profile", profile, "--padding_only", "--max_length", "256", "--batch_size", "2",
               "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    padding = json.loads(out.read_text())["results"]["profile_padding"]
    for batches in padding.values():
        assert batches["conversations"] == 36
        random_, grouped = batches["random"], batches["grouped"]
        assert 0 <= grouped["padding_fraction"] < random_["padding_fraction"] < 1
        assert random_["positions_per_real_token"] == pytest.approx(1 / (1 - random_["padding_fraction"]))
