"""Rollout episodes/s of ``grpo_qlora``: groups of G = 1 vs 4 vs 8 episodes vs clemcore's sequential play.

A tiny chat model is built offline (``playpen_tune.tiny``, as in ``playpen quickstart``) and the
process ``chdir``s into a temporary directory with a ``game_registry.json`` for the demo game. Each
run plays ``--episodes`` episodes of wordecho's train instances:

* ``G=k``: ``playpen_tune.rl.rollout.play_episodes`` with the live policy (transformers), k episodes
  of one instance per call, played as one generation batch, recorded and scored by clemcore (what
  one GRPO group costs);
* ``sequential``: the same model loaded by clemcore's ``huggingface_local`` backend, played with
  ``playpen_tune.games.play`` at batch size 1 (clemcore's sequential runner, what ``playpen eval``
  does by default).

Rollouts sample (temperature 1) with ``--max_tokens`` per turn; the untrained model mostly fails
the first turn, so each episode is about one turn. Variants are interleaved (``common.interleave``).

    python benchmarks/rollout_throughput.py [--quick] [--runs N] [--out FILE.json]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def add_arguments(parser):
    parser.add_argument("--group_sizes", default="1,4,8", help="comma-separated G; the first is the baseline")
    parser.add_argument("--episodes", type=int, default=32, help="episodes per run (a multiple of every G)")
    parser.add_argument("--max_tokens", type=int, default=16, help="tokens generated per turn")
    parser.add_argument("--hidden_size", type=int, default=128, help="tiny model width (quickstart: 128)")


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, add_arguments=add_arguments, argv=argv)
    group_sizes = [int(g) for g in args.group_sizes.split(",")]
    episodes = 8 if args.quick else args.episodes
    max_tokens = min(args.max_tokens, 4) if args.quick else args.max_tokens
    if any(episodes % g for g in group_sizes):
        raise common.BenchmarkError(f"--episodes {episodes} is not a multiple of every group size {group_sizes}")
    common.set_offline()
    previous_cwd = Path.cwd()
    workspace = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    os.chdir(workspace)
    try:
        from clemcore.backends import ModelSpec
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from playpen_tune.games import DEMO_SPLIT_FILE, play
        from playpen_tune.rl.rollout import LivePolicy, TransformersGenerator, play_episodes
        from playpen_tune.rl.split_instances import split_instances

        model_dir = common.demo_game_workspace(workspace, args.hidden_size)
        train = split_instances(["wordecho"], None, "train", str(DEMO_SPLIT_FILE))
        spec, rows = train.games["wordecho"], list(train.rows.values())
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        policy = LivePolicy(ModelSpec.from_dict({"model_name": "policy", "model_config": {
            "eos_to_cull": r"(?s)<\|eot_id\|>.*"}}), tokenizer, TransformersGenerator(model, tokenizer), {},
            temperature=1.0, max_tokens=max_tokens)
        counter = {"n": 0}

        def groups(size: int) -> dict:
            counter["n"] += 1
            began = time.perf_counter()
            for group in range(episodes // size):
                play_episodes(spec, [rows[group % len(rows)]] * size, policy, [],
                              workspace / "rollouts" / f"{counter['n']}" / f"{group}")
            seconds = time.perf_counter() - began
            return {"seconds": seconds, "episodes_per_s": episodes / seconds}

        def sequential() -> dict:
            counter["n"] += 1
            began = time.perf_counter()
            results = play(["tiny-base"], workspace / "results" / f"{counter['n']}", instances="instances_train",
                           gen_args={"max_tokens": max_tokens, "temperature": 1.0})
            seconds = time.perf_counter() - began
            played = sum(1 for _ in results.rglob("scores.json"))
            return {"seconds": seconds, "episodes_per_s": played / seconds}

        variants = {f"G={g}": (lambda g=g: groups(g)) for g in group_sizes}
        variants["sequential"] = sequential
        raw = common.interleave(variants, runs=args.runs, warmup=0 if args.quick else 1)
    finally:
        os.chdir(previous_cwd)

    names = list(raw)
    baseline = names[0]
    stats = {name: {m: common.summary(r[m] for r in runs) for m in ("episodes_per_s", "seconds")}
             for name, runs in raw.items()}
    ratios = {name: common.compare([r["episodes_per_s"] for r in raw[name]],
                                   [r["episodes_per_s"] for r in raw[baseline]]) for name in names[1:]}
    common.print_table(f"wordecho rollouts, {max_tokens} tokens per turn, tiny-base (median [min-max] of "
                       f"{args.runs} interleaved runs; sequential plays all 48 train instances)",
                       ["variant", "episodes/s", "seconds per run", f"vs {baseline}"],
                       [[name, common.fmt_summary(s["episodes_per_s"], 2), common.fmt_summary(s["seconds"], 1),
                         common.fmt_ratio(ratios[name]) if name in ratios else "1.00x"]
                        for name, s in stats.items()])
    results = {"stats": stats, "ratios_vs_baseline": ratios, "baseline": baseline, "runs": raw}
    config = {"game": "wordecho", "episodes": episodes, "max_tokens": max_tokens, "group_sizes": group_sizes,
              "model": "tiny-base (playpen_tune.tiny)", "hidden_size": args.hidden_size}
    document = common.write_json(args.out, "rollout_throughput", args, config, results)
    import shutil

    shutil.rmtree(workspace, ignore_errors=True)
    return document


if __name__ == "__main__":
    main()
