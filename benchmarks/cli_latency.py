"""Wall time of ``playpen --help`` and ``playpen list learners`` vs ``clem --help``.

Each command runs as a fresh subprocess of the console scripts in this interpreter's venv,
from an empty temporary working directory, interleaved (one warm-up round first, none with
--quick, so every command starts with warm OS file caches). Reported: median [min-max] seconds per command and
the ratios clem / playpen (target: >= 10x; playpen's CLI imports no heavy library for these).

    python benchmarks/cli_latency.py [--quick] [--runs N] [--out FILE.json]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 10.0


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=3, argv=argv)
    commands = {
        "playpen --help": [common.VENV_BIN / "playpen", "--help"],
        "playpen list learners": [common.VENV_BIN / "playpen", "list", "learners"],
        "clem --help": [common.VENV_BIN / "clem", "--help"],
    }
    for argv_ in commands.values():
        if not Path(argv_[0]).exists():
            raise common.BenchmarkError(f"{argv_[0]} not found; run with the project's venv python")
    env = common.offline_env()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as cwd:
        variants = {name: (lambda a=argv_: common.run_timed(a, cwd=cwd, env=env, timeout=300)[0])
                    for name, argv_ in commands.items()}
        times = common.interleave(variants, runs=args.runs, warmup=0 if args.quick else 1)

    stats = {name: common.summary(values) for name, values in times.items()}
    ratios = {f"clem --help / {name}": common.compare(times["clem --help"], times[name])
              for name in ("playpen --help", "playpen list learners")}
    common.print_table(f"CLI latency, seconds (median [min-max] of {args.runs} runs, interleaved)",
                       ["command", "wall s"], [[name, common.fmt_summary(s, 3)] for name, s in stats.items()])
    rows = []
    for name, comparison in ratios.items():
        met = comparison["ratio"] is not None and comparison["ratio"] >= TARGET
        rows.append([name, common.fmt_ratio(comparison, 1), f">= {TARGET:g}x: {'met' if met else 'MISSED'}"])
    common.print_table("Ratios (median ratio [min-max of per-round ratios])", ["ratio", "value", "target"], rows)
    results = {"seconds": stats, "ratios": ratios, "target_ratio": TARGET,
               "target_met": all(c["ratio"] is not None and c["ratio"] >= TARGET for c in ratios.values())}
    return common.write_json(args.out, "cli_latency", args,
                             {"commands": {k: [str(c) for c in v] for k, v in commands.items()}}, results)


if __name__ == "__main__":
    main()
