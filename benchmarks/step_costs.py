"""Where a QLoRA training step's time goes on CPU, one suspect at a time, on the same batches.

``learner_overhead.py`` compares whole runs (playpen vs a hand-written TRL script vs plain peft); this
script takes one process, one model and one fixed list of batches, and times a LoRA forward + backward
(no optimizer step: the weights stay the same for every variant) under each variant, interleaved with a
rotating start after one warm-up step each. The baseline is what ``playpen learn -l sft_qlora`` runs by
default: the NF4 4-bit base, gradient checkpointing (non-reentrant), and TRL 1.x's fused LM head
(``trl.trainer.utils.add_fused_lm_head``, the head SFTTrainer installs) computing per-token
log-probabilities, entropy and top-1 for its ``entropy`` and ``mean_token_accuracy`` metrics. Each
other variant changes one thing:

* ``no_metrics``: the fused head computes the log-probabilities only (what the loss needs);
* ``plain_head``: no fused head, the model's own loss over the full ``(batch, length, vocab)`` logits;
* ``no_checkpointing``: gradient checkpointing off (activations kept instead of recomputed);
* ``fp32_base``: the base unquantized in float32 (the cost of bitsandbytes' 4-bit CPU kernel);
* ``threads_N`` (``--more_threads N``): the baseline with N torch threads instead of ``--threads``.

    python benchmarks/step_costs.py --model_dir DIR [--profile FILE.jsonl] [--examples 16] [--batch 4]
        [--max_length 256] [--steps 3] [--runs 3] [--more_threads 2] [--out FILE.json]

Reported per variant: seconds per step and tokens per second (median [min-max] over the runs), and
the ratio to the baseline per round (median [min-max]); a ratio below 1 is a variant faster than the
default. The losses of the first batch show every variant computes the same loss (fp32_base: close).
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

BASELINE = "default"
METRICS = ("log_probs", "entropy", "is_top1")  # what TRL's SFTTrainer asks its fused head for


def add_arguments(parser):
    parser.add_argument("--model_dir", type=Path, default=None,
                        help="the model to train (e.g. the directory 'playpen gguf-model' prints); default: a tiny "
                             "model built offline")
    parser.add_argument("--profile", type=Path, default=None,
                        help="draw the conversations from this length profile (.jsonl, see length_profile.py); "
                             "default: the demo game's conversations")
    parser.add_argument("--examples", type=int, default=None, help="conversations (default 16; 8 with --quick)")
    parser.add_argument("--batch", type=int, default=4, help="conversations per step")
    parser.add_argument("--max_length", type=int, default=256, help="truncate conversations to this many tokens")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant and run (default 3; "
                                                                "1 with --quick)")
    parser.add_argument("--more_threads", type=int, default=2,
                        help="also time the baseline with this many torch threads (0: no such variant)")


def conversations(args) -> tuple[list[dict], str]:
    if args.profile:
        import length_profile

        return length_profile.synthesise(args.profile, args.examples), f"length profile {args.profile}"
    from playpen_tune.games import demo_corpus

    prompts = [t for t in demo_corpus() if not t.startswith("ANSWER:")]
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": f"ANSWER: {p.split()[-1]}"}]}
            for p in prompts]
    return (rows * (args.examples // len(rows) + 1))[:args.examples], "the demo game's conversations"


def batches(tokenizer, rows: list[dict], size: int, max_length: int, count: int, seed: int = 0) -> list[dict]:
    """``count`` right-padded batches of ``size`` conversations drawn with ``seed``; labels on every real token."""
    import torch

    encoded = [tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"][:max_length]
               for r in rows]
    rng = random.Random(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    drawn = []
    for _ in range(count):
        chosen = rng.sample(encoded, min(size, len(encoded)))
        width = max(len(ids) for ids in chosen)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in chosen])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in chosen])
        drawn.append({"input_ids": input_ids, "attention_mask": mask, "labels": input_ids.masked_fill(mask == 0, -100)})
    return drawn


def lora_model(model_dir: Path, four_bit: bool):
    """The base (NF4 4-bit as playpen loads it, or float32) prepared for training, with gradient checkpointing
    and a fresh LoRA adapter on every linear layer (rank 16, as playpen's default)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, set_seed

    set_seed(0)  # the same LoRA initialisation for both bases
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.float32) if four_bit else None
    base = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quantization, dtype=torch.float32)
    if four_bit:
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=True,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    model.train()
    return model


def fused_head(model, outputs: tuple[str, ...]) -> None:
    """Install TRL's fused LM head on the model under the adapter, computing ``outputs``."""
    from trl.trainer.utils import add_fused_lm_head

    base = model.get_base_model()
    base.__dict__.pop("forward", None)  # the class's forward again, not the head installed before
    add_fused_lm_head(base, outputs=outputs)


def step(model, batch: dict, fused: bool) -> float:
    """One forward + backward; the loss. Gradients are dropped, so the adapter stays as it was."""
    outputs = model(**batch, fused_lm_head=True) if fused else model(**batch)
    outputs.loss.backward()
    model.zero_grad(set_to_none=True)
    return outputs.loss.item()


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, default_runs=3, add_arguments=add_arguments,
                             argv=argv)
    args.examples = args.examples or (8 if args.quick else 16)
    steps = args.steps or (1 if args.quick else 3)
    common.set_offline()
    import tempfile

    import torch
    from transformers import AutoTokenizer

    if args.model_dir is None:
        model_dir = common.build_tiny_workspace(Path(tempfile.mkdtemp(prefix="bench-steps-")))
    else:
        model_dir = args.model_dir.resolve()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows, source = conversations(args)
    work = batches(tokenizer, rows, args.batch, args.max_length, steps)
    tokens_per_run = sum(int(b["attention_mask"].sum()) for b in work)
    threads = torch.get_num_threads()

    common.log(f"loading {model_dir} (4-bit and float32)")
    four_bit, full = lora_model(model_dir, four_bit=True), lora_model(model_dir, four_bit=False)
    fused_head(full, METRICS)

    def setting(model, *, fused=True, outputs=METRICS, checkpointing=True, num_threads=threads):
        def run() -> dict:
            if model is four_bit:
                fused_head(model, outputs)
                if checkpointing:
                    model.get_base_model().gradient_checkpointing_enable(
                        gradient_checkpointing_kwargs={"use_reentrant": False})
                else:
                    model.get_base_model().gradient_checkpointing_disable()
            torch.set_num_threads(num_threads)
            try:
                began = time.perf_counter()
                losses = [step(model, batch, fused) for batch in work]
                seconds = time.perf_counter() - began
            finally:
                torch.set_num_threads(threads)
            return {"step_s": seconds / steps, "tokens_per_s": tokens_per_run / seconds, "first_loss": losses[0]}
        return run

    variants = {BASELINE: setting(four_bit), "no_metrics": setting(four_bit, outputs=("log_probs",)),
                "plain_head": setting(four_bit, fused=False),
                "no_checkpointing": setting(four_bit, checkpointing=False), "fp32_base": setting(full)}
    if args.more_threads and args.more_threads != threads:
        variants[f"threads_{args.more_threads}"] = setting(four_bit, num_threads=args.more_threads)
    for name, run in variants.items():  # one untimed step each: lazy initialisation, allocator warm-up
        common.log(f"  warm-up {name}")
        run()
    raw = common.interleave(variants, runs=args.runs)

    stats = {name: {m: common.summary(r[m] for r in runs) for m in ("step_s", "tokens_per_s")}
             for name, runs in raw.items()}
    ratios = {name: common.compare([r["step_s"] for r in runs], [r["step_s"] for r in raw[BASELINE]])
              for name, runs in raw.items() if name != BASELINE}
    first_losses = {name: runs[0]["first_loss"] for name, runs in raw.items()}
    common.print_table(f"LoRA forward + backward on {model_dir.name}: {steps} steps of {args.batch} x <= "
                       f"{args.max_length} tokens ({tokens_per_run} tokens), {threads} thread(s); median [min-max] "
                       f"of {args.runs} interleaved runs",
                       ["variant", "s/step", "tokens/s", "step time / default", "first loss"],
                       [[name, common.fmt_summary(stats[name]["step_s"]),
                         common.fmt_summary(stats[name]["tokens_per_s"], 1),
                         common.fmt_ratio(ratios[name], 3) if name in ratios else "1", f"{first_losses[name]:.4f}"]
                        for name in raw])
    config = {"model_dir": str(model_dir), "source": source, "examples": args.examples, "batch": args.batch,
              "max_length": args.max_length, "steps": steps, "tokens_per_run": tokens_per_run, "threads": threads,
              "variants": list(raw)}
    results = {"seconds_and_tokens": stats, "step_time_over_default": ratios, "first_loss": first_losses,
               "runs": raw}
    return common.write_json(args.out, "step_costs", args, config, results)


if __name__ == "__main__":
    try:
        main()
    except common.BenchmarkError as error:
        sys.exit(f"error: {error}")
