"""A playpen command gives torch the cores other processes leave idle, unless OMP_NUM_THREADS is set."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from playpen import cpu_threads

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("load, threads", [(0.2, 4), (1.6, 2), (3.4, 1), (9.0, 1)])
def test_idle_cores_are_the_cores_minus_the_load_average(monkeypatch, load, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert cpu_threads.idle_cores() == threads


def torch_threads_of_a_command(env: dict) -> str:
    """torch's thread count inside ``playpen list learners`` (a handler runs) in a fresh process."""
    code = ("import sys; from playpen.cli import main; main(['list', 'learners']); "
            "import torch, os; print('THREADS', torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=dict(env, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("THREADS", 1)[1].split()


def test_a_command_sets_torch_threads_to_the_idle_cores_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    threads, variable = torch_threads_of_a_command(env)
    assert threads == variable and 1 <= int(threads) <= len(os.sched_getaffinity(0))
    assert torch_threads_of_a_command(dict(env, OMP_NUM_THREADS="2")) == ["2", "2"]  # the user's choice stands
