"""How many CPU threads torch uses in a playpen command.

torch starts one OpenMP thread per core. On a CPU that other busy processes share, those threads
spin-wait for cores they do not get, and a run becomes many times slower than with fewer threads:
a LoRA forward+backward of SmolLM2-135M on a 4-bit base (batch 4 x 100 tokens, 2 cores, load
average 7) took 37-52 s with 2 threads and 6-9 s with 1. So, unless the user set
``OMP_NUM_THREADS``, a command takes the cores that other processes leave idle when it starts
(cores minus the 1-minute load average, at least one); on an idle machine that is every core.
"""
from __future__ import annotations

import os
import sys

THREADS_VARIABLE = "OMP_NUM_THREADS"


def idle_cores() -> int:
    """Cores this process may run on, minus the 1-minute load average (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        load = 0.0
    return max(1, cores - round(load))


def choose_cpu_threads() -> None:
    """Set ``OMP_NUM_THREADS`` to :func:`idle_cores` unless it is set (torch reads it when it loads;
    a torch already loaded in this process is told directly). Imports no torch."""
    if os.environ.get(THREADS_VARIABLE):
        return
    threads = idle_cores()
    os.environ[THREADS_VARIABLE] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
