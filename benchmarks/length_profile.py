"""Random padded vs length-grouped vs padding-free vs packing batches, on real clembench transcript lengths.

Data: a length profile (``--profile FILE.jsonl``; one line per conversation: ``game``, ``outcome``
and ``turns``, a list of ``[role, characters]`` with role ``u`` or ``a``), e.g. the 1,754
conversations of Llama-3.1-8B-Instruct playing 21 clembench games. ``--examples`` conversations
are drawn from it (seeded; all with ``--examples 0``) and every message is synthesised to its
recorded character count from 3-letter words, which the tiny tokenizer (trained on those words)
encodes as one token per word and space: 4 characters per token, like Llama 3 on English text.
A seeded 10% is held out.

Each run is a fresh worker process (the one of ``packing.py``: ``SFTQLoRALearner.prepare()``, the
real 4-bit tiny Llama + LoRA + TRL SFTTrainer) training one epoch, batch ``--batch_size`` (8),
``--max_length`` 2048, the same learning rate, with

* ``padded``: random padded batches (``group_by_length=False``), the baseline;
* ``grouped``: ``group_by_length=True``, playpen's default: transformers' ``LengthGroupedSampler``
  (a new random order every epoch, sorted by length within groups of up to 50 batches);
* ``padding_free``: random batches flattened into one sequence without padding (collator swap,
  see ``packing.py``);
* ``packing``: TRL best-fit-decreasing packing into ``--max_length`` rows.

Measured as in ``packing.py``: real (non-padding) tokens/s of ``train()``, peak RSS, final train
loss and held-out loss after the same examples (one epoch). The ideal ratio is the padded runs'
positions computed / real tokens: what removing all padding at no cost would give.

    python benchmarks/length_profile.py --profile PROFILE.jsonl [--quick] [--runs N] [--out FILE.json]
"""
from __future__ import annotations

import json
import random
import shutil
import string
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import packing  # noqa: E402

VARIANTS = {
    "padded": {"packing": False, "padding_free": False, "group_by_length": False},
    "grouped": {"packing": False, "padding_free": False, "group_by_length": True},
    "padding_free": {"packing": False, "padding_free": True, "group_by_length": False},
    "packing": {"packing": True, "padding_free": False, "group_by_length": False},
}
ROLES = {"u": "user", "a": "assistant"}
WORDS = sorted({"".join(random.Random(n).choices(string.ascii_lowercase, k=3)) for n in range(160)})


def add_arguments(parser):
    packing.add_arguments(parser)
    parser.set_defaults(max_length=2048, batch_size=8, hidden_size=64)
    parser.add_argument("--profile", type=Path, help="length profile (.jsonl: game, outcome, turns [[role, chars]])")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of the variants to run (padded, the baseline, always runs)")
    parser.add_argument("--padding_only", action="store_true",
                        help="only count the padding of random and length-grouped batches over the whole profile "
                             "(tokenized, no training) and exit")
    parser.add_argument("--examples", type=int, default=160,
                        help="conversations drawn from the profile (0 = all; 24 with --quick)")


def synthesise(profile: Path, examples: int, seed: int = 0) -> list[dict]:
    """SFT rows whose messages have the profile's roles and character counts (text: 3-letter words)."""
    lines = [json.loads(line) for line in profile.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise common.BenchmarkError(f"{profile}: no conversations")
    rng = random.Random(seed)
    if examples:
        lines = rng.sample(lines, min(examples, len(lines)))

    def text(characters: int) -> str:
        words = " ".join(rng.choice(WORDS) for _ in range(characters // 4 + 1))
        return words[:max(1, characters)]

    return [{"messages": [{"role": ROLES[role], "content": text(chars)} for role, chars in line["turns"]]}
            for line in lines]


def prepare_workspace(workspace: Path, rows: list[dict], hidden_size: int, num_layers: int) -> dict:
    from playpen_tune.tiny import registry_entry

    train, heldout = common.split_rows(rows, 0.1, seed=0)
    (workspace / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (workspace / "heldout.json").write_text(json.dumps(heldout), encoding="utf-8")
    model_dir = common.build_tiny_workspace(workspace, "tiny-base", corpus=[" ".join(WORDS)] * 8,
                                            vocab_size=1024, hidden_size=hidden_size, num_layers=num_layers,
                                            max_positions=4096)
    setup = {"model": registry_entry("tiny-base", model_dir), "rows": len(rows), "train_rows": len(train),
             "heldout_rows": len(heldout)}
    (workspace / "setup.json").write_text(json.dumps(setup))
    return setup


def characters_per_token(workspace: Path, rows: list[dict]) -> float:
    """Characters per token of the synthesised message texts with the tiny tokenizer (Llama 3 on English: ~4)."""
    from transformers import AutoTokenizer

    setup = json.loads((workspace / "setup.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(setup["model"]["huggingface_id"])
    texts = [m["content"] for row in rows for m in row["messages"]]
    return sum(map(len, texts)) / sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def profile_padding(workspace: Path, rows: list[dict], max_length: int, batch: int, group: int) -> dict:
    """Padding share and positions / real tokens of random and of length-grouped batches of ``batch`` rows
    over all ``rows`` (the samplers the Trainer uses: ``RandomSampler``, ``LengthGroupedSampler`` with
    groups built for ``group`` rows per optimizer step); no training, so it covers the whole profile."""
    import torch
    from transformers import AutoTokenizer
    from transformers.trainer_pt_utils import get_length_grouped_indices

    setup = json.loads((workspace / "setup.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(setup["model"]["huggingface_id"])
    lengths = [min(max_length, len(tokenizer.apply_chat_template(row["messages"], tokenize=True,
                                                                 return_dict=True)["input_ids"])) for row in rows]
    generator = torch.Generator().manual_seed(0)
    orders = {"random": torch.randperm(len(lengths), generator=generator).tolist(),
              "grouped": get_length_grouped_indices(lengths, group, generator=generator)}
    result = {}
    for name, order in orders.items():
        slots = sum(len(order[k:k + batch]) * max(lengths[i] for i in order[k:k + batch])
                    for k in range(0, len(order), batch))
        result[name] = {"padding_fraction": 1 - sum(lengths) / slots, "positions_per_real_token": slots / sum(lengths)}
    result["conversations"], result["real_tokens"] = len(lengths), sum(lengths)
    return result


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, add_arguments=add_arguments, argv=argv)
    if args.worker:
        print(json.dumps(packing.worker(args, VARIANTS)))
        return {}
    if args.profile is None or not args.profile.is_file():
        raise SystemExit(f"error: --profile FILE.jsonl is required (got {args.profile})")
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"error: --variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    common.set_offline()
    examples = 24 if args.quick and args.examples == 160 else args.examples
    workspace = Path(tempfile.mkdtemp(prefix="bench-length-"))
    common.log(f"workspace {workspace}")
    rows = synthesise(args.profile, examples)
    setup = prepare_workspace(workspace, rows, args.hidden_size, args.num_layers)
    if args.padding_only:
        everything = synthesise(args.profile, 0)
        padding = {f"batch {b} x accumulation {a}": profile_padding(workspace, everything, args.max_length, b, b * a)
                   for b, a in ((args.batch_size, 1), (4, 4))}
        common.print_table(f"Whole profile ({len(everything)} conversations, --max_length {args.max_length}): padding",
                           ["batches", "random", "grouped", "ideal (random positions / real tokens)"],
                           [[k, common.fmt(v["random"]["padding_fraction"], 3),
                             common.fmt(v["grouped"]["padding_fraction"], 3),
                             common.fmt(v["random"]["positions_per_real_token"], 2)] for k, v in padding.items()])
        document = common.write_json(args.out, "length_profile", args, {"profile": str(args.profile),
                                     "max_length": args.max_length}, {"profile_padding": padding})
        shutil.rmtree(workspace, ignore_errors=True)
        return document
    lengths = packing.token_lengths(workspace, args.max_length)
    chosen = {v: VARIANTS[v] for v in VARIANTS if v == "padded" or v in args.variants.split(",")}
    raw = packing.run_variants(Path(__file__), workspace, args, chosen)
    stats, ratios = packing.summarise(raw, "padded")
    ideal = common.summary(r["slots"] / r["real_tokens"] for r in raw["padded"])
    packing.print_results(
        f"One epoch of {setup['train_rows']} conversations from {args.profile.name} (tokens per conversation: "
        f"median {lengths['median']:.0f}, mean {lengths['mean']:.0f}, max {lengths['max']:.0f}, cut at "
        f"{args.max_length}); median [min-max] of {args.runs} runs", stats, ratios, "padded", ideal["median"])
    results = {"stats": stats, "ratios_vs_padded": ratios, "ideal_ratio": ideal, "target_ratio": packing.TARGET,
               "target_met": packing.target_met(ratios), "token_lengths": lengths, "runs": raw}
    config = {"profile": str(args.profile), "examples": examples, "max_length": args.max_length,
              "per_device_train_batch_size": args.batch_size, "gradient_accumulation_steps": 1,
              "learning_rate": args.learning_rate, "epochs": 1, "hidden_size": args.hidden_size,
              "num_layers": args.num_layers, "variants": chosen, "words": len(WORDS),
              "characters_per_token": characters_per_token(workspace, rows),
              **{k: v for k, v in setup.items() if k != "model"}}
    document = common.write_json(args.out, "length_profile", args, config, results)
    shutil.rmtree(workspace, ignore_errors=True)
    return document


if __name__ == "__main__":
    main()
