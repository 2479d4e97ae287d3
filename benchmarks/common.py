"""Helpers shared by the benchmark scripts: arguments, interleaved runs, statistics, tables, JSON,
tiny offline workspaces, and trainer instrumentation (token counts, step times, peak memory).

Conventions every script follows:

* ``--runs N`` (default 5) repetitions of every variant; ``--quick`` lowers the default (for the
  test suite and smoke runs) and shrinks the workload;
* variants are *interleaved*: round 1 runs A B C, round 2 B C A, round 3 C A B, ... so that load
  from other processes on the machine hits every variant alike (the rotation also spreads
  "runs right after X" effects evenly);
* every figure is reported as the median with min/max over the runs; every comparison is a
  ratio of medians measured in the same invocation, plus min/max of the per-round ratios;
* ``--out FILE.json`` writes everything, including each single run, with environment details.

Only the standard library is imported at module level: ``cli_latency.py`` must not pay for torch.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent  # the interpreter running the benchmark (the project's venv)
SHARED_DATA = Path(os.environ.get("PLAYPEN_SHARED_DATA", REPO.parent / "shared" / "data"))
SFT_FILE = SHARED_DATA / "clembench-evaluation" / "sft_dataset_559.json"
TRANSCRIPTS = SHARED_DATA / "clembench-transcripts" / "results"


class BenchmarkError(RuntimeError):
    """A benchmark step failed (the message says which and shows the end of its output)."""


# ----------------------------------------------------------------------------- arguments

def parse_args(description: str, *, quick_runs: int = 2, default_runs: int = 5, default_threads: int = 1,
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--quick``, ``--runs N`` and ``--out FILE.json`` plus the script's own options."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"small workload and {quick_runs} run(s) unless --runs is given (smoke test)")
    parser.add_argument("--runs", type=int, default=None,
                        help=f"runs per variant (default {default_runs}; {quick_runs} with --quick)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON to this file")
    parser.add_argument("--threads", type=int, default=default_threads,
                        help="CPU threads for torch (OMP/MKL) here and in subprocesses; 0 = torch's default. "
                             "1 keeps timings stable on a shared machine (OpenMP spin-waits when oversubscribed)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = quick_runs if args.quick else default_runs
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.threads > 0:  # before torch is imported here; inherited by every subprocess
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(args.threads)
    return args


def offline_env(**extra: str) -> dict[str, str]:
    """The current environment, forced offline (nothing is downloaded), plus ``extra``."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def set_offline() -> None:
    """Force this process offline (call before importing transformers/datasets)."""
    os.environ.update({k: v for k, v in offline_env().items()
                       if k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                                "TOKENIZERS_PARALLELISM")})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- statistics

def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summary(values: Iterable[float | None]) -> dict:
    """``{"median", "min", "max", "n", "values"}`` of the finite values (None-valued if there are none)."""
    values = list(values)
    finite = [float(v) for v in values if _finite(v)]
    if not finite:
        return {"median": None, "min": None, "max": None, "n": 0, "values": values}
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite),
            "n": len(finite), "values": values}


def ratio(numerator: dict, denominator: dict) -> float | None:
    """Ratio of two summaries' medians."""
    a, b = numerator.get("median"), denominator.get("median")
    if not _finite(a) or not _finite(b) or b == 0:
        return None
    return a / b


def compare(numerator: Sequence[float | None], denominator: Sequence[float | None]) -> dict:
    """Ratio of medians plus min/max of the per-round ratios (round i of A over round i of B)."""
    paired = [a / b for a, b in zip(numerator, denominator, strict=True) if _finite(a) and _finite(b) and b != 0]
    return {"ratio": ratio(summary(numerator), summary(denominator)),
            "paired_min": min(paired) if paired else None, "paired_max": max(paired) if paired else None,
            "pairs": len(paired)}


# ----------------------------------------------------------------------------- running

def interleave(variants: dict[str, Callable[[], Any]], runs: int, warmup: int = 0,
               label: str = "") -> dict[str, list]:
    """Run every variant ``runs`` times, interleaved with a rotating start; return results per variant.

    ``warmup`` extra rounds go first and are discarded (caches, lazy imports). Round ``r`` runs
    the variants starting at index ``r % len(variants)``.
    """
    names = list(variants)
    results: dict[str, list] = {name: [] for name in names}
    for round_ in range(warmup + runs):
        start = round_ % len(names)
        for name in names[start:] + names[:start]:
            kind = "warmup" if round_ < warmup else f"run {round_ - warmup + 1}/{runs}"
            began = time.perf_counter()
            value = variants[name]()
            log(f"  {label}{name}: {kind} done in {time.perf_counter() - began:.1f} s")
            if round_ >= warmup:
                results[name].append(value)
    return results


def tail(text: str | bytes | None, lines: int = 25) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def run_timed(cmd: Sequence[str], *, cwd: str | Path | None = None, env: dict | None = None,
              timeout: float | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``cmd``, return (wall seconds, completed process); raise BenchmarkError unless it exits 0."""
    began = time.perf_counter()
    try:
        done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise BenchmarkError(f"{' '.join(map(str, cmd))} timed out after {timeout} s:\n{tail(error.stdout)}\n"
                             f"{tail(error.stderr)}") from None
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{tail(done.stdout)}\n"
                             f"{tail(done.stderr)}")
    return seconds, done


def last_json_line(stdout: str) -> dict:
    """The last line of ``stdout`` that parses as a JSON object (worker subprocess results)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise BenchmarkError(f"no JSON result line in the worker's output:\n{tail(stdout)}")


# ----------------------------------------------------------------------------- output

def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_summary(stats: dict, digits: int = 2) -> str:
    """``median [min-max]``."""
    if stats.get("median") is None:
        return "-"
    return f"{fmt(stats['median'], digits)} [{fmt(stats['min'], digits)}-{fmt(stats['max'], digits)}]"


def fmt_ratio(comparison: dict, digits: int = 2) -> str:
    if comparison.get("ratio") is None:
        return "-"
    return (f"{comparison['ratio']:.{digits}f}x [{comparison['paired_min']:.{digits}f}-"
            f"{comparison['paired_max']:.{digits}f}]")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def environment() -> dict:
    """Where the numbers come from: versions, CPU/GPU, load. Imports nothing heavy."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("playpen-tune", "clemcore", "torch", "transformers", "trl", "peft", "bitsandbytes",
                    "accelerate", "datasets"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "versions": versions}
    try:
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        env["loadavg_1_5_15"] = list(os.getloadavg())
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
        env["cuda_version"] = torch.version.cuda
    return env


def write_json(path: Path | None, benchmark: str, args: argparse.Namespace, config: dict, results: dict) -> dict:
    """Write (and return) the benchmark's JSON document; non-finite numbers become null."""
    document = _json_safe({
        "benchmark": benchmark,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "quick": bool(args.quick),
        "runs": args.runs,
        "threads": getattr(args, "threads", None),
        "environment": environment(),
        "config": config,
        "results": results,
    })
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\nwrote {path}")
    return document


# ----------------------------------------------------------------------------- tiny models and data

def build_tiny_workspace(directory: Path, name: str = "tiny-base", corpus: list[str] | None = None,
                         **model_kwargs) -> Path:
    """Build a tiny chat model offline in ``directory/models/name`` and register it in
    ``directory/model_registry.json`` (huggingface_local). Returns the model directory."""
    from playpen_tune.tiny import build_tiny_chat_model, registry_entry

    directory = Path(directory)
    model_dir = build_tiny_chat_model(directory / "models" / name, corpus=corpus, **model_kwargs)
    registry = directory / "model_registry.json"
    entries = json.loads(registry.read_text()) if registry.exists() else []
    entries = [e for e in entries if e.get("model_name") != name] + [registry_entry(name, model_dir)]
    registry.write_text(json.dumps(entries, indent=2) + "\n")
    return model_dir


def demo_game_workspace(workspace: Path, hidden_size: int) -> Path:
    """In ``workspace`` (the cwd): quiet clemcore's logging (alike for every run), build and register
    ``tiny-base`` with a tokenizer trained on the demo game's texts, and write the demo game's
    ``game_registry.json``. Returns the model directory."""
    import logging

    import clemcore.cli  # noqa: F401  (configures clemcore's logging, quieted here)

    from playpen_tune.games import demo_corpus, write_game_registry

    for name in ("clemcore", "clemcore.run", "clemcore.cli"):
        logging.getLogger(name).setLevel(logging.WARNING)
    log(f"building the tiny model in {workspace}")
    model_dir = build_tiny_workspace(workspace, "tiny-base", corpus=demo_corpus(), hidden_size=hidden_size)
    write_game_registry(workspace)
    return model_dir


def message_texts(rows: Iterable[dict]) -> list[str]:
    return [m["content"] for row in rows for m in row["messages"]]


def load_sft_rows(sources: Sequence[str | Path], outcomes: Sequence[str] = ("success", "failure")) -> list[dict]:
    """SFT rows (``{"messages": [...]}``) from files and/or clemcore results dirs, via playpen's loader."""
    from playpen_tune.data import load_sft_dataset

    dataset, _ = load_sft_dataset([str(s) for s in sources], outcomes=list(outcomes))
    return [{"messages": row["messages"]} for row in dataset]


def split_rows(rows: list[dict], heldout_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Deterministic shuffle and split into (train, held-out)."""
    import random

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(rows) * heldout_fraction))
    heldout = [rows[i] for i in order[:cut]]
    train = [rows[i] for i in order[cut:]]
    return train, heldout


# ----------------------------------------------------------------------------- memory

def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to ru_maxrss)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory while the ``with`` block runs.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (bytes held by
    tensors; the allocator's cache is not counted). CPU: a thread samples the process RSS every
    ``interval`` seconds; ``peak_bytes`` is the highest sample, ``delta_bytes`` the rise over the
    RSS before the block (the working set the block added: activations, gradients, optimizer).
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.kind = None
        self.peak_bytes = self.baseline_bytes = self.delta_bytes = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            self.kind = "cuda_max_memory_allocated"
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline_bytes = torch.cuda.memory_allocated()
        else:
            self.kind = "cpu_rss_sampled"
            self.baseline_bytes = self.peak_bytes = current_rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes())

    def __exit__(self, *exc):
        if self.kind == "cuda_max_memory_allocated":
            import torch

            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes())
        self.delta_bytes = self.peak_bytes - self.baseline_bytes
        return False

    def to_dict(self) -> dict:
        mib = 1024 ** 2
        return {"kind": self.kind, "peak_mib": self.peak_bytes / mib, "baseline_mib": self.baseline_bytes / mib,
                "delta_mib": self.delta_bytes / mib}


# ----------------------------------------------------------------------------- trainer instrumentation

class TrainMeter:
    """Counts what a (TRL/transformers) trainer actually feeds the model, and times optimizer steps.

    :meth:`attach` wraps ``trainer.training_step`` (called once per micro-batch with the collated
    batch, so counts are exact even when the dataloader prefetches) and adds a callback that
    timestamps every optimizer step (after ``torch.cuda.synchronize`` on GPU). Counted per run:

    * ``slots``: positions in ``input_ids`` (padding included) - what the model computes on;
    * ``real_tokens``: non-padding positions (``attention_mask`` sum of padded batches; the
      flattened length, ``cu_seq_lens_q[-1]``, of padding-free and packed batches, which carry
      no mask and no padding);
    * ``trained_tokens``: positions whose label is not -100 (the tokens the loss is computed on).
    """

    def __init__(self):
        self.slots = self.real_tokens = self.trained_tokens = self.micro_batches = 0
        self.step_times: list[float] = []
        self.steps: list[dict] = []  # per optimizer step: seconds and the tokens of its micro-batches
        self._step_began = None
        self._pending = {"slots": 0, "real_tokens": 0, "trained_tokens": 0}

    def attach(self, trainer) -> TrainMeter:
        from transformers import TrainerCallback

        meter = self
        original = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            meter.count(inputs)
            return original(model, inputs, *args, **kwargs)

        trainer.training_step = training_step

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                meter._sync()
                meter._step_began = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                meter._sync()
                if meter._step_began is not None:
                    seconds = time.perf_counter() - meter._step_began
                    meter.step_times.append(seconds)
                    meter.steps.append({"s": seconds, **meter._pending})
                meter._step_began = None
                meter._pending = {"slots": 0, "real_tokens": 0, "trained_tokens": 0}

        trainer.add_callback(StepTimer())
        return self

    @staticmethod
    def _sync():
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()

    def count(self, inputs: dict) -> None:
        ids = inputs["input_ids"]
        slots = int(ids.numel())
        if inputs.get("attention_mask") is not None:
            real = int(inputs["attention_mask"].sum())
        elif inputs.get("cu_seq_lens_q") is not None:
            real = int(inputs["cu_seq_lens_q"][-1])
        else:
            real = slots
        trained = int((inputs["labels"] != -100).sum()) if inputs.get("labels") is not None else 0
        self.micro_batches += 1
        self.slots += slots
        self.real_tokens += real
        self.trained_tokens += trained
        for key, value in (("slots", slots), ("real_tokens", real), ("trained_tokens", trained)):
            self._pending[key] += value

    def to_dict(self) -> dict:
        return {"slots": self.slots, "real_tokens": self.real_tokens, "trained_tokens": self.trained_tokens,
                "micro_batches": self.micro_batches, "optimizer_steps": len(self.step_times),
                "padding_fraction": 1 - self.real_tokens / self.slots if self.slots else None,
                "step_times_s": self.step_times, "steps": self.steps}


def heldout_loss(model, tokenizer, rows: list[dict], max_length: int) -> dict:
    """Token-weighted mean cross-entropy on the assistant tokens of ``rows`` (one example at a time,
    no padding, no packing: the same computation for every training variant)."""
    import torch

    was_training = model.training
    model.eval()
    device = next(p for p in model.parameters()).device
    total, tokens = 0.0, 0
    with torch.no_grad():
        for row in rows:
            encoded = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                    return_assistant_tokens_mask=True)
            ids = torch.tensor(encoded["input_ids"][:max_length], device=device)[None]
            mask = torch.tensor(encoded["assistant_masks"][:max_length], device=device)[None].bool()
            labels = torch.where(mask, ids, torch.full_like(ids, -100))
            logits = model(input_ids=ids).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            valid = int((shift_labels != -100).sum())
            if valid == 0:
                continue
            loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                                     shift_labels.reshape(-1), ignore_index=-100,
                                                     reduction="sum")
            total += float(loss)
            tokens += valid
    if was_training:
        model.train()
    return {"loss": total / tokens if tokens else None, "tokens": tokens, "examples": len(rows)}
