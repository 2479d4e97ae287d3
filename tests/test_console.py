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
            "--max_length", "64"] + (["-v"] if verbose else [])
    run = run_playpen(workdir, *args)
    assert run.returncode == 0, run.stderr[-3000:]
    console = run.stdout + run.stderr
    assert "done: models/tiny-sft_qlora" in run.stdout and "data: 8 examples" in run.stdout  # our own lines
    assert "100%" in run.stderr  # progress bars
    log = (workdir / "models" / "tiny-sft_qlora" / "train.log").read_text()
    for chatter in CHATTER + ((KERNEL_NOTICE,) if bitsandbytes_logs_the_kernel_notice() else ()):
        assert chatter in log
        assert (chatter in console) is verbose, (chatter, console[-3000:])
    assert ("library messages: models/tiny-sft_qlora/train.log" in run.stdout) is not verbose


def test_eval_sends_clemcore_info_lines_to_playpen_log(workdir):
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    run = run_playpen(workdir, "eval", "mock", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-r", "results")
    assert run.returncode == 0, run.stderr[-3000:]
    assert " - INFO - " not in run.stdout + run.stderr, run.stdout[-3000:]
    assert "clemscore" in run.stdout
    log = (workdir / "results" / "playpen.log").read_text()
    assert "clemcore" in log and "INFO" in log
