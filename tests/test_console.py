"""What a newcomer's console shows: our lines and progress bars; library chatter in the run's log file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHATTER = ("FutureWarning", "pin_memory")
KERNEL_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def bitsandbytes_logs_the_kernel_notice() -> bool:
    """bitsandbytes logs KERNEL_NOTICE on import on a CPU with AVX512-BF16 when the ``kernels`` package is absent."""
    import importlib.util

    from bitsandbytes.functional import has_avx512bf16

    return has_avx512bf16() and importlib.util.find_spec("kernels") is None


def run_playpen(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "playpen", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=pythonpath, HF_HUB_OFFLINE="1"), timeout=900)


@pytest.fixture
def sft_rows(workdir) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"Say the word: w{i}"},
                          {"role": "assistant", "content": f"ANSWER: w{i}"}]} for i in range(8)]
    (workdir / "sft.json").write_text(json.dumps(rows))
    return workdir / "sft.json"


@pytest.mark.parametrize("verbose", [False, True])
def test_learn_sends_library_warnings_to_train_log(workdir, sft_rows, verbose):
    args = ["learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", "sft.json", "--max_steps", "1",
            "--max_length", "64", "--logging_steps", "1"] + (["-v"] if verbose else [])
    run = run_playpen(workdir, *args)
    assert run.returncode == 0, run.stderr[-3000:]
    console = run.stdout + run.stderr
    assert "done: models/tiny-sft_qlora" in run.stdout and "data: 8 examples" in run.stdout  # our own lines
    assert "loading tiny (" in run.stdout  # a line while the model loads
    assert "100%" in run.stderr  # progress bars
    assert "step 1/1: loss " in console and "mean_token_accuracy " in console  # one compact line per log
    assert "{'loss'" not in console  # not transformers' raw dict
    assert (workdir / "models" / "tiny-sft_qlora" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    log = (workdir / "models" / "tiny-sft_qlora" / "train.log").read_text()
    for chatter in CHATTER + ((KERNEL_NOTICE,) if bitsandbytes_logs_the_kernel_notice() else ()):
        assert chatter in log
        assert (chatter in console) is verbose, (chatter, console[-3000:])
    assert ("library messages: models/tiny-sft_qlora/train.log" in run.stdout) is not verbose


def test_eval_sends_clemcore_info_lines_to_playpen_log(workdir):
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    run = run_playpen(workdir, "eval", "mock", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-r",
                      "results")
    assert run.returncode == 0, run.stderr[-3000:]
    assert " - INFO - " not in run.stdout + run.stderr, run.stdout[-3000:]
    assert "clemscore" in run.stdout
    log = (workdir / "results" / "playpen.log").read_text()
    assert "clemcore" in log and "INFO" in log
    assert_bars_only_in_log(run.stderr, log)


def assert_bars_only_in_log(console: str, log: str) -> None:
    """clemcore's own bars (setup, responses, batch sizes, scoring) are one plain line each in the log file;
    the console has our one episode bar instead."""
    for bar in ("Completed game instances", "Batch sizes:", "Scoring episodes"):
        assert bar not in console, console[-2000:]
        assert f"progress: {bar}" in log
    assert "episode/s" in console
    assert "\x1b[" not in log and "\r" not in log  # no cursor movement, no redrawn lines


def test_play_prints_one_bar_and_each_games_outcomes(workdir):
    from playpen_tune.games import DEMO_SPLIT_FILE, write_game_registry

    write_game_registry(workdir)
    run = run_playpen(workdir, "play", "mock", "-g", "wordecho", "--split_source", str(DEMO_SPLIT_FILE), "-r", "played")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "loaded mock in " in run.stdout
    assert "wordecho                 48 episode(s): 48 played (48 success, 0 lost), 0 aborted" in run.stdout
    summary = json.loads((workdir / "played" / "mock.play.json").read_text())
    assert summary["outcomes"]["wordecho"] == {"played": 48, "success": 48, "lost": 0, "aborted": 0}
    assert_bars_only_in_log(run.stderr, (workdir / "played" / "playpen.log").read_text())
