"""Padded batches vs packing (TRL bfd) vs padding-free, on variable-length clembench data.

Data: the referencegame transcripts of the shared clemcore results directory (outcomes success
and failure, through ``playpen_tune.data.load_sft_dataset``; ~250 tokens each) together with
the shared ``sft_dataset_559.json`` (short rows, ~20-80 tokens) - a mix of long game transcripts
and short examples, the case where padding wastes the most. A fixed, seeded 10% is held out.

Each run is a fresh worker subprocess that asks ``SFTQLoRALearner.prepare()`` (the real
learner: 4-bit tiny Llama + LoRA + TRL SFTTrainer) for a trainer with one variant's settings,
trains one epoch over the training split and reports, for ``trainer.train()``:

* tokens/s: *real* tokens (non-padding) and *trained* tokens (label != -100) per second of
  training-loop wall time, counted from the batches the model actually received
  (``common.TrainMeter``); padding share; optimizer steps;
* peak memory: CPU - peak RSS sampled during ``train()`` and its rise over the RSS before it;
  CUDA - ``torch.cuda.max_memory_allocated``;
* quality: the mean of the last logged training losses, and the held-out loss (assistant
  tokens, one example at a time, identical code for every variant - ``common.heldout_loss``).

Variants (all with the same model, LoRA, learning rate, batch size and max_length):

* ``padded``: random padded batches (``packing=False, padding_free=False, group_by_length=False``);
* ``packing``: ``--packing true`` (TRL best-fit-decreasing packing into max_length rows, which
  TRL trains padding-free);
* ``padding_free``: one flattened sequence per batch, no padding, no packing. playpen's
  ``--padding_free true`` cannot be used as is: TRL refuses ``padding_free`` without packing
  while ``max_length`` is set, and playpen always sets it. The worker therefore prepares the
  padded trainer (TRL truncates the data to max_length there) and swaps in TRL's own collator
  with ``padding_free=True`` - exactly what TRL would use - and the JSON says so.

Ratios are vs ``padded``. Target: >= 2x effective (real) tokens/s.

    python benchmarks/packing.py [--quick] [--runs N] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 2.0
VARIANTS = {
    "padded": {"packing": False, "padding_free": False, "group_by_length": False},
    "packing": {"packing": True, "padding_free": False, "group_by_length": False},
    "padding_free": {"packing": False, "padding_free": True, "group_by_length": False},
}
MEASURES = ("real_tokens_per_s", "trained_tokens_per_s", "train_s", "prepare_s", "peak_memory_mib",
            "memory_rise_mib", "final_train_loss", "heldout_loss", "optimizer_steps", "padding_fraction")
RATIO_MEASURES = ("real_tokens_per_s", "trained_tokens_per_s", "peak_memory_mib", "memory_rise_mib", "heldout_loss")


def add_arguments(parser):
    parser.add_argument("--max_length", type=int, default=512,
                        help="truncation length; also the length of packed rows (all examples fit in 512)")
    parser.add_argument("--batch_size", type=int, default=4, help="per_device_train_batch_size")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--hidden_size", type=int, default=128, help="tiny model width")
    parser.add_argument("--num_layers", type=int, default=2, help="tiny model depth")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only this many rows of the data (default: all; 96 with --quick)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)


# ----------------------------------------------------------------------------- worker

def worker(args, variants: dict) -> dict:
    """Train one epoch with ``variants[args.worker]``'s learner settings (in this worker process) and measure it."""
    common.set_offline()
    import torch

    from playpen.learners import LearnRequest
    from playpen_tune.config import SFTQLoRAConfig
    from playpen_tune.learners.sft import SFTQLoRALearner

    workspace = args.workspace
    setup = json.loads((workspace / "setup.json").read_text())
    torch.manual_seed(0)
    flags = dict(variants[args.worker])
    swap_collator = flags["padding_free"] and not flags["packing"]
    if swap_collator:
        flags["padding_free"] = False  # see the module docstring
    config = SFTQLoRAConfig(dataset=[str(workspace / "train.json")], outcomes=["success", "failure"],
                            max_steps=-1, num_train_epochs=1.0, per_device_train_batch_size=args.batch_size,
                            gradient_accumulation_steps=1, max_length=args.max_length,
                            learning_rate=args.learning_rate, logging_steps=1, save_steps=100_000, seed=42,
                            **flags)
    output_dir = Path(tempfile.mkdtemp(prefix=f"{args.worker}-", dir=workspace))
    shutil.rmtree(output_dir)
    request = LearnRequest(model=setup["model"], config=config, output_dir=output_dir, name=f"bench-{args.worker}",
                           learner="sft_qlora")
    began = time.perf_counter()
    run = SFTQLoRALearner().prepare(request)
    prepare_s = time.perf_counter() - began
    trainer = run.trainer
    if swap_collator:
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        trainer.data_collator = DataCollatorForLanguageModeling(pad_token_id=run.tokenizer.pad_token_id,
                                                                padding_free=True)
        trainer.padding_free = True
    meter = common.TrainMeter().attach(trainer)
    with common.PeakMemory() as memory:
        began = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - began
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    tail = losses[-max(1, len(losses) // 10):]
    heldout_rows = json.loads((workspace / "heldout.json").read_text())
    heldout = common.heldout_loss(trainer.model, run.tokenizer, heldout_rows, args.max_length)
    counts = meter.to_dict()
    shutil.rmtree(output_dir, ignore_errors=True)
    return {"variant": args.worker, "collator_swapped_to_padding_free": swap_collator,
            "prepare_s": prepare_s, "train_s": train_s,
            "real_tokens_per_s": counts["real_tokens"] / train_s,
            "trained_tokens_per_s": counts["trained_tokens"] / train_s,
            "slots_per_s": counts["slots"] / train_s,
            "peak_memory_mib": memory.to_dict()["peak_mib"], "memory_rise_mib": memory.to_dict()["delta_mib"],
            "memory_kind": memory.kind, "final_train_loss": sum(tail) / len(tail) if tail else None,
            "heldout_loss": heldout["loss"], "heldout_tokens": heldout["tokens"],
            "examples_trained": len(trainer.train_dataset),
            **{k: v for k, v in counts.items() if k not in ("step_times_s", "steps")}}


# ----------------------------------------------------------------------------- orchestration

def prepare_workspace(workspace: Path, limit: int | None, hidden_size: int, num_layers: int) -> dict:
    from playpen_tune.tiny import registry_entry

    sources = [common.TRANSCRIPTS, common.SFT_FILE]
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise common.BenchmarkError(f"shared data missing: {', '.join(missing)} (set PLAYPEN_SHARED_DATA)")
    rows = common.load_sft_rows(sources, outcomes=("success", "failure"))
    if limit:
        import random

        rows = random.Random(1).sample(rows, min(limit, len(rows)))
    train, heldout = common.split_rows(rows, 0.1, seed=0)
    (workspace / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (workspace / "heldout.json").write_text(json.dumps(heldout), encoding="utf-8")
    model_dir = common.build_tiny_workspace(workspace, "tiny-base", corpus=common.message_texts(train),
                                            vocab_size=1024, hidden_size=hidden_size, num_layers=num_layers)
    setup = {"model": registry_entry("tiny-base", model_dir), "rows": len(rows), "train_rows": len(train),
             "heldout_rows": len(heldout), "sources": [str(s) for s in sources]}
    (workspace / "setup.json").write_text(json.dumps(setup))
    return setup


def token_lengths(workspace: Path, max_length: int) -> dict:
    from transformers import AutoTokenizer

    setup = json.loads((workspace / "setup.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(setup["model"]["huggingface_id"])
    rows = json.loads((workspace / "train.json").read_text())
    lengths = [min(max_length, len(tokenizer.apply_chat_template(r["messages"], tokenize=True,
                                                                 return_dict=True)["input_ids"]))
               for r in rows]
    return common.summary(lengths) | {"mean": sum(lengths) / len(lengths), "values": None}


def run_variants(script: Path, workspace: Path, args, variants: dict) -> dict[str, list[dict]]:
    """Every variant ``args.runs`` times, interleaved, each run a fresh ``script --worker VARIANT`` process."""
    env = common.offline_env()
    base_cmd = [sys.executable, script.resolve(), "--workspace", workspace, "--max_length", args.max_length,
                "--batch_size", args.batch_size, "--learning_rate", args.learning_rate, "--threads", args.threads]

    def run(variant):
        _, done = common.run_timed(base_cmd + ["--worker", variant], cwd=workspace, env=env, timeout=3600)
        return common.last_json_line(done.stdout)

    return common.interleave({v: (lambda v=v: run(v)) for v in variants}, runs=args.runs)


def summarise(raw: dict[str, list[dict]], baseline: str) -> tuple[dict, dict]:
    """Per variant the summaries of :data:`MEASURES`; per other variant the ratios vs ``baseline``."""
    stats = {v: {m: common.summary(r[m] for r in runs) for m in MEASURES} for v, runs in raw.items()}
    ratios = {v: {m: common.compare([r[m] for r in raw[v]], [r[m] for r in raw[baseline]]) for m in RATIO_MEASURES}
              for v in raw if v != baseline}
    return stats, ratios


def target_met(ratios: dict) -> dict[str, bool]:
    return {v: r["real_tokens_per_s"]["ratio"] is not None and r["real_tokens_per_s"]["ratio"] >= TARGET
            for v, r in ratios.items()}


def print_results(title: str, stats: dict, ratios: dict, baseline: str, ideal: float | None = None) -> None:
    """The per-variant table and the ratio table (with the ideal ratio, padded slots / real tokens, if given)."""
    common.print_table(
        title,
        ["variant", "real tok/s", "trained tok/s", "steps", "pad share", "train() s", "peak MiB", "rise MiB",
         "final loss", "held-out loss"],
        [[v, common.fmt_summary(s["real_tokens_per_s"], 0), common.fmt_summary(s["trained_tokens_per_s"], 0),
          common.fmt(s["optimizer_steps"]["median"], 0), common.fmt(s["padding_fraction"]["median"], 2),
          common.fmt_summary(s["train_s"], 1), common.fmt(s["peak_memory_mib"]["median"], 0),
          common.fmt(s["memory_rise_mib"]["median"], 0), common.fmt(s["final_train_loss"]["median"], 3),
          common.fmt_summary(s["heldout_loss"], 3)] for v, s in stats.items()])
    met = target_met(ratios)
    rows = [[v, common.fmt_ratio(r["real_tokens_per_s"]), common.fmt_ratio(r["trained_tokens_per_s"]),
             common.fmt_ratio(r["peak_memory_mib"]), common.fmt_ratio(r["heldout_loss"], 3),
             f">= {TARGET:g}x: {'met' if met[v] else 'MISSED'}"] for v, r in ratios.items()]
    ideal_note = f"; ideal {ideal:.2f}x (padded slots / real tokens of {baseline})" if ideal else ""
    common.print_table(f"Ratios vs {baseline} (median ratio [min-max of per-round ratios]){ideal_note}",
                       ["variant", "real tok/s", "trained tok/s", "peak memory", "held-out loss", "target"], rows)


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, add_arguments=add_arguments, argv=argv)
    if args.worker:
        print(json.dumps(worker(args, VARIANTS)))
        return {}
    common.set_offline()
    limit = args.limit or (96 if args.quick else None)
    workspace = Path(tempfile.mkdtemp(prefix="bench-packing-"))
    common.log(f"workspace {workspace}")
    setup = prepare_workspace(workspace, limit, args.hidden_size, args.num_layers)
    lengths = token_lengths(workspace, args.max_length)
    raw = run_variants(Path(__file__), workspace, args, VARIANTS)
    stats, ratios = summarise(raw, "padded")
    print_results(f"One epoch of {setup['train_rows']} rows (train tokens per row: median {lengths['median']:.0f}, "
                  f"min {lengths['min']:.0f}, max {lengths['max']:.0f}); median [min-max] of {args.runs} runs",
                  stats, ratios, "padded")
    results = {"stats": stats, "ratios_vs_padded": ratios, "target_ratio": TARGET, "target_met": target_met(ratios),
               "token_lengths": lengths, "runs": raw}
    config = {"max_length": args.max_length, "per_device_train_batch_size": args.batch_size,
              "gradient_accumulation_steps": 1, "learning_rate": args.learning_rate, "epochs": 1,
              "hidden_size": args.hidden_size, "num_layers": args.num_layers, "variants": VARIANTS,
              "padding_free_note": "collator swapped after prepare(): playpen's --padding_free true alone "
                                   "makes TRL raise (padding_free without packing requires max_length=None)",
              **{k: v for k, v in setup.items() if k != "model"}}
    document = common.write_json(args.out, "packing", args, config, results)
    shutil.rmtree(workspace, ignore_errors=True)
    return document


if __name__ == "__main__":
    main()
