"""Episodes per minute of playing the demo game ``wordecho`` at batch size 1 vs 8 vs 16.

A tiny chat model is built offline (``playpen_tune.tiny``, tokenizer trained on the game's texts,
as in ``playpen quickstart``) in a temporary directory, registered there as ``tiny-base``
(backend ``huggingface_local``) next to a ``game_registry.json`` for the demo game, and the
process ``chdir``s into it. Each run plays every instance of the chosen instances file with
``playpen_tune.games.play`` (``playpen.playing.play_games``: model loading, clemcore's runner
and ``clemcore.cli.score``, exactly what ``playpen eval`` calls for each model) into a fresh results
directory. Batch size 1 uses clemcore's sequential runner; larger sizes its batchwise runner.
One warm-up round first (none with --quick), then the batch sizes interleaved.

The untrained model never answers ``ANSWER: <word>``, so every episode ends after its first
turn, and it rarely emits its end-of-turn token, so every turn generates ``--max_tokens``
tokens: a fixed amount of generation per episode.

Default instances: ``instances_train`` (48 episodes). The held-out file (``--instances
instances_heldout``) has only 12 episodes - fewer than one batch of 16, so 16 could not be told
apart from 12 there; what is played does not change the speed of an untrained model.

    python benchmarks/eval_throughput.py [--quick] [--runs N] [--out FILE.json]
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
    parser.add_argument("--batch_sizes", default="1,8,16", help="comma-separated; the first is the baseline")
    parser.add_argument("--instances", default=None,
                        help="instances file of wordecho (default instances_train; instances_heldout with --quick)")
    parser.add_argument("--max_tokens", type=int, default=300,
                        help="tokens generated per turn (300: the default of playpen eval and clem run)")
    parser.add_argument("--hidden_size", type=int, default=128, help="tiny model width (quickstart: 128)")


def count_episodes(results_dir: Path) -> int:
    return sum(1 for _ in results_dir.rglob("scores.json"))


def first_responses(results_dir: Path) -> dict[str, str | None]:
    """``{experiment/instance: the model's first response}`` of every episode in ``results_dir``."""
    import json

    responses = {}
    for path in sorted(results_dir.rglob("interactions.json")):
        key = f"{path.parent.parent.name}/{path.parent.name}"
        responses[key] = None
        for turn in json.loads(path.read_text(encoding="utf-8")).get("turns", []):
            contents = [event.get("action", {}).get("content") for event in turn
                        if event.get("from") != "GM" and event.get("to") == "GM"]
            if contents:
                responses[key] = contents[0]
                break
    return responses


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, add_arguments=add_arguments, argv=argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    instances = args.instances or ("instances_heldout" if args.quick else "instances_train")
    max_tokens = min(args.max_tokens, 8) if args.quick else args.max_tokens
    common.set_offline()
    previous_cwd = Path.cwd()
    workspace = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    os.chdir(workspace)
    try:
        from playpen_tune.games import play

        common.demo_game_workspace(workspace, args.hidden_size)
        counter = {"n": 0}
        responses: dict[int, dict] = {}  # batch size -> first run's responses

        def run(batch_size: int) -> dict:
            counter["n"] += 1
            results_dir = workspace / "results" / f"b{batch_size}-{counter['n']}"
            began = time.perf_counter()
            play(["tiny-base"], results_dir, instances=instances, batch_size=batch_size,
                 gen_args={"max_tokens": max_tokens})
            seconds = time.perf_counter() - began
            episodes = count_episodes(results_dir)
            responses.setdefault(batch_size, first_responses(results_dir))
            if episodes == 0:
                raise common.BenchmarkError(f"batch {batch_size}: no episode was scored in {results_dir}")
            return {"seconds": seconds, "episodes": episodes, "episodes_per_min": episodes / seconds * 60}

        raw = common.interleave({f"batch {b}": (lambda b=b: run(b)) for b in batch_sizes}, runs=args.runs,
                                warmup=0 if args.quick else 1)
    finally:
        os.chdir(previous_cwd)

    names = list(raw)
    baseline = names[0]
    stats = {name: {m: common.summary(r[m] for r in runs) for m in ("episodes_per_min", "seconds", "episodes")}
             for name, runs in raw.items()}
    ratios = {name: common.compare([r["episodes_per_min"] for r in raw[name]],
                                   [r["episodes_per_min"] for r in raw[baseline]]) for name in names[1:]}
    best = max(names, key=lambda n: stats[n]["episodes_per_min"]["median"] or 0)
    episodes = int(stats[baseline]["episodes"]["median"])
    common.print_table(f"wordecho ({instances}, {episodes} episodes, {max_tokens} tokens per turn), tiny-base on "
                       f"huggingface_local (median [min-max] of {args.runs} interleaved runs)",
                       ["batch size", "episodes/min", "seconds per run", f"vs {baseline}"],
                       [[name, common.fmt_summary(s["episodes_per_min"], 1), common.fmt_summary(s["seconds"], 1),
                         common.fmt_ratio(ratios[name]) if name in ratios else "1.00x"]
                        for name, s in stats.items()])
    # the smallest batch size within 5% of the fastest: memory grows with the batch, speed saturates
    best_rate = stats[best]["episodes_per_min"]["median"]
    recommendation = min(int(n.split()[-1]) for n in names
                         if (stats[n]["episodes_per_min"]["median"] or 0) >= 0.95 * best_rate)
    print(f"\nfastest: {best}. Recommended default batch size: {recommendation} (the smallest within 5% of "
          f"the fastest; clemcore plays sequentially anyway for models that do not support batching)")
    reference = responses[batch_sizes[0]]
    identical = {f"batch {b}": sum(responses[b].get(k) == v for k, v in reference.items()) / max(1, len(reference))
                 for b in batch_sizes[1:]}
    print("share of episodes whose response equals the batch-1 response (greedy decoding): "
          + ", ".join(f"{name}: {share:.0%}" for name, share in identical.items()))
    sample = next(iter(reference.values()), None)
    print(f"a response of the untrained model: {sample!r}")
    results = {"stats": stats, "ratios_vs_baseline": ratios, "baseline": baseline, "fastest": best,
               "identical_responses_vs_baseline": identical, "sample_response": sample,
               "recommended_batch_size": recommendation, "runs": raw}
    config = {"game": "wordecho", "instances": instances, "episodes": episodes, "max_tokens": max_tokens,
              "batch_sizes": batch_sizes, "model": "tiny-base (playpen_tune.tiny, huggingface_local)",
              "hidden_size": args.hidden_size}
    document = common.write_json(args.out, "eval_throughput", args, config, results)
    import shutil

    shutil.rmtree(workspace, ignore_errors=True)
    return document


if __name__ == "__main__":
    main()
