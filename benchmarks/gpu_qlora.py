"""QLoRA SFT throughput and memory of ``sft_qlora`` on a Llama-3.1-8B-sized model (CUDA only).

Without CUDA it prints a skip message and exits 0 (writing ``{"skipped": true, ...}`` to
``--out`` if given). ``--smoke`` runs the same pipeline with a tiny config on any device, to
check the script itself (its numbers mean nothing).

The model: ``LlamaConfig`` with the Llama-3.1-8B architecture (4096 hidden, 14336 MLP, 32
layers, 32 heads / 8 KV heads, 128,256 vocabulary, untied head, llama3 RoPE; 8.03 B parameters)
and random weights - nothing is downloaded. It is built directly on the GPU in bfloat16
(``AutoModelForCausalLM.from_config`` under ``torch.device("cuda")``: seconds, 16 GB), saved
as safetensors shards to a scratch directory (``--workdir``, ~16 GB of disk), and freed. Every
variant then loads it exactly as ``playpen learn -l sft_qlora -m meta-llama/Llama-3.1-8B`` loads
a hub model: ``SFTQLoRALearner.prepare()`` quantizes it to 4-bit NF4 at load (bitsandbytes),
adds LoRA r=16 on all linear layers and builds TRL's SFTTrainer. Building + saving takes about
1-2 minutes; each variant's load about half a minute; the defaults fit in ~7 minutes on one
H100/H200 and a total ``--time_budget`` (default 450 s) makes sure of it: a variant that would
not fit is skipped (and says so), a running one stops early at the deadline.

Each variant runs in its own subprocess (clean CUDA memory statistics) for ``--steps``
optimizer steps at ``--max_length`` 2048 with ``--batch_size`` sequences per step on synthetic
conversations of varied length (log-uniform 64-2048 tokens). Measured (``common.TrainMeter``,
``torch.cuda.synchronize`` around every step): real (non-padding) tokens per GPU per second
for every step after the first ``--skip_steps`` (warm-up): median [min-max] over the steps,
plus their aggregate; peak memory = ``torch.cuda.max_memory_allocated`` during ``train()``.

Variants (default: all four): gradient checkpointing on/off x packing off/on
(``gc+pad`` is playpen's default configuration).

    python benchmarks/gpu_qlora.py [--steps 15] [--time_budget 450] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

VARIANTS = {
    "gc+pad": {"gradient_checkpointing": True, "packing": False},
    "gc+packing": {"gradient_checkpointing": True, "packing": True},
    "nogc+pad": {"gradient_checkpointing": False, "packing": False},
    "nogc+packing": {"gradient_checkpointing": False, "packing": True},
}
ANCHORS = [
    {"source": "LLaMA-Factory benchmark, Hugging Face 4-bit QLoRA, LLaMA2-7B, A100-40GB",
     "tokens_per_gpu_per_s": 2415, "memory_gb": 9},
    {"source": "LLaMA-Factory benchmark, unsloth 4-bit QLoRA, LLaMA2-7B, A100-40GB",
     "tokens_per_gpu_per_s": 3726, "memory_gb": 7},
]
LLAMA_31_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                   num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                   rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu",
                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192})
SMOKE = dict(LLAMA_31_8B, vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2)


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per variant (default 15)")
    parser.add_argument("--skip_steps", type=int, default=2, help="first steps left out of the statistics")
    parser.add_argument("--max_length", type=int, default=None, help="sequence length (default 2048)")
    parser.add_argument("--batch_size", type=int, default=2, help="sequences per optimizer step")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated of: {', '.join(VARIANTS)}")
    parser.add_argument("--time_budget", type=float, default=450.0,
                        help="seconds for the whole script; variants that would not fit are skipped")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch directory for the random checkpoint (~16 GB; default: a temp dir)")
    parser.add_argument("--model_dir", type=Path, default=None,
                        help="reuse a checkpoint built by an earlier run (--keep_model) instead of building one")
    parser.add_argument("--keep_model", action="store_true", help="keep the built checkpoint (path in the JSON)")
    parser.add_argument("--attn_implementation", default=None,
                        help="set on the model after prepare() (e.g. flash_attention_2 if installed); "
                             "default: playpen's (transformers' default, sdpa)")
    parser.add_argument("--smoke", action="store_true", help="tiny config on any device: checks the script only")
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--deadline_unix", type=float, default=None, help=argparse.SUPPRESS)


# ----------------------------------------------------------------------------- model and data

def pseudo_words(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "gra", "pen", "dul", "xo", "zi", "bre"]
    return sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(600)})


def make_tokenizer(words: list[str], max_positions: int):
    """A small byte-level BPE with playpen_tune.tiny's Llama-3-style chat template."""
    from playpen_tune.tiny import build_tokenizer

    tokenizer = build_tokenizer([" ".join(words[i:i + 20]) for i in range(0, len(words), 20)], vocab_size=1024)
    tokenizer.model_max_length = max_positions
    return tokenizer


def synthetic_rows(count: int, max_tokens: int, words: list[str], tokenizer, seed: int = 0) -> list[dict]:
    """Single-turn conversations of pseudo-words (3/4 prompt, 1/4 answer) whose token lengths are
    log-uniform in [64, max_tokens] (calibrated with the tokenizer)."""
    rng = random.Random(seed)
    sample = " ".join(rng.choice(words) for _ in range(2000))
    tokens_per_word = len(tokenizer(sample, add_special_tokens=False)["input_ids"]) / 2000
    rows = []
    for _ in range(count):
        target = math.exp(rng.uniform(math.log(64), math.log(max_tokens)))
        n_words = max(8, int((target - 12) / tokens_per_word))  # ~12 tokens of chat template
        prompt = " ".join(rng.choice(words) for _ in range(int(n_words * 0.75)))
        answer = " ".join(rng.choice(words) for _ in range(n_words - int(n_words * 0.75)))
        rows.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
    return rows


def row_lengths(rows: list[dict], tokenizer) -> dict:
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
               for r in rows]
    return {**common.summary(lengths), "mean": sum(lengths) / len(lengths), "values": None}


def build_checkpoint(directory: Path, architecture: dict, tokenizer, device: str) -> dict:
    """Random-weight checkpoint (bf16 on GPU) with ``tokenizer``, saved as safetensors shards."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    timings = {}
    config = LlamaConfig(**architecture, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    began = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    if device == "cuda":
        torch.cuda.synchronize()
    timings["init_s"] = time.perf_counter() - began
    parameters = sum(p.numel() for p in model.parameters())
    placed = str(next(model.parameters()).device)
    began = time.perf_counter()
    model.save_pretrained(directory, max_shard_size="4GB")
    tokenizer.save_pretrained(directory)
    timings["save_s"] = time.perf_counter() - began
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"parameters": parameters, "built_on": placed, "dtype": str(dtype).replace("torch.", ""), **timings}


# ----------------------------------------------------------------------------- worker

def worker(args) -> dict:
    common.set_offline()
    import torch
    from transformers import TrainerCallback

    from playpen.learners import LearnRequest
    from playpen_tune.config import SFTQLoRAConfig
    from playpen_tune.learners.sft import SFTQLoRALearner

    workdir = args.workdir
    settings = json.loads((workdir / "settings.json").read_text())
    flags = VARIANTS[args.worker]
    config = SFTQLoRAConfig(dataset=[str(workdir / "data.json")], max_steps=settings["steps"],
                            per_device_train_batch_size=settings["batch_size"], gradient_accumulation_steps=1,
                            max_length=settings["max_length"], logging_steps=1, save_steps=1_000_000,
                            warmup_steps=0, seed=42, **flags)
    output_dir = workdir / f"run-{args.worker}"
    shutil.rmtree(output_dir, ignore_errors=True)
    model = {"model_name": "llama-3.1-8b-random", "backend": "huggingface_local",
             "huggingface_id": settings["model_dir"], "model_config": {}}
    request = LearnRequest(model=model, config=config, output_dir=output_dir, name=f"bench-{args.worker}",
                           learner="sft_qlora")
    on_gpu = torch.cuda.is_available()
    began = time.perf_counter()
    run = SFTQLoRALearner().prepare(request)
    if on_gpu:
        torch.cuda.synchronize()
    prepare_s = time.perf_counter() - began
    trainer = run.trainer
    if args.attn_implementation:
        trainer.model.set_attn_implementation(args.attn_implementation)
    loaded_bytes = torch.cuda.memory_allocated() if on_gpu else None
    meter = common.TrainMeter().attach(trainer)
    deadline = args.deadline_unix

    class Deadline(TrainerCallback):
        stopped = False

        def on_step_end(self, args_, state, control, **kwargs):
            if deadline and time.time() > deadline:
                Deadline.stopped = True
                control.should_training_stop = True
            return control

    trainer.add_callback(Deadline())
    with common.PeakMemory() as memory:
        began = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - began
    steps = meter.steps
    measured = steps[args.skip_steps:] if len(steps) > args.skip_steps else steps
    per_step = [s["real_tokens"] / s["s"] for s in measured if s["s"] > 0]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    shutil.rmtree(output_dir, ignore_errors=True)
    gib = 1024 ** 3
    return {
        "variant": args.worker, **flags, "prepare_s": prepare_s, "train_s": train_s,
        "steps_done": len(steps), "steps_measured": len(measured), "stopped_at_deadline": Deadline.stopped,
        "tokens_per_gpu_per_s": common.summary(per_step),
        "tokens_per_gpu_per_s_aggregate": (sum(s["real_tokens"] for s in measured) / sum(s["s"] for s in measured)
                                           if measured else None),
        "trained_tokens_per_s_aggregate": (sum(s["trained_tokens"] for s in measured) /
                                           sum(s["s"] for s in measured) if measured else None),
        "step_s": common.summary(s["s"] for s in measured),
        "real_tokens_per_step": common.summary(s["real_tokens"] for s in measured),
        "padding_fraction": 1 - sum(s["real_tokens"] for s in steps) / max(1, sum(s["slots"] for s in steps)),
        "peak_memory_gib": memory.peak_bytes / gib, "memory_kind": memory.kind,
        "memory_after_load_gib": loaded_bytes / gib if loaded_bytes is not None else None,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "attn_implementation": getattr(trainer.model.config, "_attn_implementation", None),
    }


# ----------------------------------------------------------------------------- orchestration

def skipped_document(args, reason: str) -> dict:
    print(f"gpu_qlora: skipped - {reason}")
    return common.write_json(args.out, "gpu_qlora", args, {}, {"skipped": True, "reason": reason})


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, default_runs=1, default_threads=0,
                             add_arguments=add_arguments, argv=argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return {}
    started = time.time()
    deadline = started + args.time_budget
    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.smoke:
        return skipped_document(args, "no CUDA device (torch.cuda.is_available() is False); "
                                      "run it on a GPU machine, or pass --smoke to check the script")
    common.set_offline()
    steps = args.steps or (4 if args.smoke or args.quick else 15)
    max_length = args.max_length or (256 if args.smoke else 2048)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    architecture = SMOKE if args.smoke else LLAMA_31_8B
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-gpu-qlora-"))
    workdir.mkdir(parents=True, exist_ok=True)
    device_info = {"device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
                   "total_memory_gib": torch.cuda.get_device_properties(0).total_memory / 1024 ** 3 if on_gpu else None}
    print(f"gpu_qlora: {device_info['device']}; scratch {workdir}; budget {args.time_budget:.0f} s", flush=True)

    build = None
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = workdir / "model"
        tokenizer = make_tokenizer(pseudo_words(), architecture["max_position_embeddings"])
        common.log("building the random-weight checkpoint ...")
        build = build_checkpoint(model_dir, architecture, tokenizer, "cuda" if on_gpu else "cpu")
        common.log(f"  built {build['parameters'] / 1e9:.2f} B parameters on {build['built_on']} in "
                   f"{build['init_s']:.1f} s, saved in {build['save_s']:.1f} s")
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = synthetic_rows(steps * args.batch_size * 8 + 64, max_length, pseudo_words(), tokenizer)
    (workdir / "data.json").write_text(json.dumps(rows))
    lengths = row_lengths(rows, tokenizer)
    (workdir / "settings.json").write_text(json.dumps({"steps": steps, "batch_size": args.batch_size,
                                                       "max_length": max_length, "model_dir": str(model_dir)}))
    config = {"architecture": "Llama-3.1-8B (random weights)" if not args.smoke else "tiny (smoke)",
              "llama_config": architecture, "steps": steps, "skip_steps": args.skip_steps, "max_length": max_length,
              "per_device_train_batch_size": args.batch_size, "gradient_accumulation_steps": 1,
              "lora": "r=16, alpha=16, dropout 0.05, all-linear (playpen defaults)",
              "quantization": "4-bit NF4, double quant, bf16 compute (playpen defaults, quantized at load)",
              "synthetic_rows": len(rows), "row_tokens": lengths, "variants": {v: VARIANTS[v] for v in variants},
              "time_budget_s": args.time_budget, "build": build, "model_dir": str(model_dir),
              "attn_implementation": args.attn_implementation, **device_info}
    results: dict = {"variants": {}, "anchors": ANCHORS}
    durations: list[float] = []

    def save_partial():
        results["elapsed_s"] = time.time() - started
        common.write_json(args.out, "gpu_qlora", args, config, results)

    env = common.offline_env()
    for variant in variants:
        remaining = deadline - time.time()
        floor = 5.0 if args.smoke else 60.0  # below this, a variant cannot load and train on one GPU
        estimate = max([floor, *durations])
        if remaining < estimate:
            results["variants"][variant] = {"skipped": f"time budget: {remaining:.0f} s left, needs ~{estimate:.0f} s"}
            common.log(f"  {variant}: skipped (time budget)")
            continue
        cmd = [sys.executable, Path(__file__).resolve(), "--worker", variant, "--workdir", workdir,
               "--skip_steps", args.skip_steps, "--deadline_unix", deadline - 15, "--threads", args.threads]
        if args.attn_implementation:
            cmd += ["--attn_implementation", args.attn_implementation]
        began = time.perf_counter()
        try:
            _, done = common.run_timed(cmd, cwd=workdir, env=env, timeout=max(30.0, remaining))
            results["variants"][variant] = common.last_json_line(done.stdout)
        except common.BenchmarkError as error:
            text = str(error)
            results["variants"][variant] = {"error": "CUDA out of memory" if "OutOfMemory" in text else text[-2000:]}
        durations.append(time.perf_counter() - began)
        common.log(f"  {variant}: done in {durations[-1]:.0f} s")
        save_partial()

    rows_out = []
    for variant, r in results["variants"].items():
        if "tokens_per_gpu_per_s" in r:
            rows_out.append([variant, common.fmt_summary(r["tokens_per_gpu_per_s"], 0),
                             common.fmt(r["tokens_per_gpu_per_s_aggregate"], 0), common.fmt(r["peak_memory_gib"], 1),
                             common.fmt(r["step_s"]["median"], 2), common.fmt(r["padding_fraction"], 2),
                             f"{r['steps_measured']}/{r['steps_done']}", common.fmt(r["prepare_s"], 0)])
        else:
            rows_out.append([variant, r.get("skipped") or r.get("error", "?")[:60], "", "", "", "", "", ""])
    common.print_table(f"QLoRA SFT, {config['architecture']}, max_length {max_length}, batch {args.batch_size}, "
                       f"{device_info['device']}",
                       ["variant", "tokens/GPU/s median [min-max]", "aggregate", "peak GiB", "step s",
                        "pad share", "steps measured", "load s"], rows_out)
    base = results["variants"].get("gc+pad", {})
    if "tokens_per_gpu_per_s" in base:
        results["ratios_vs_gc+pad"] = {
            v: {"tokens_per_gpu_per_s": common.ratio(r["tokens_per_gpu_per_s"], base["tokens_per_gpu_per_s"]),
                "peak_memory": r["peak_memory_gib"] / base["peak_memory_gib"]}
            for v, r in results["variants"].items() if "tokens_per_gpu_per_s" in r and v != "gc+pad"}
        common.print_table("Ratios vs gc+pad (playpen's defaults)", ["variant", "tokens/GPU/s", "peak memory"],
                           [[v, common.fmt(r["tokens_per_gpu_per_s"]), common.fmt(r["peak_memory"])]
                            for v, r in results["ratios_vs_gc+pad"].items()])
    common.print_table("Published anchors (other hardware and settings; for orientation only)",
                       ["source", "tokens/GPU/s", "memory GB"],
                       [[a["source"], f"{a['tokens_per_gpu_per_s']:,}", a["memory_gb"]] for a in ANCHORS])
    if not (args.keep_model or args.model_dir):
        shutil.rmtree(model_dir, ignore_errors=True)
        config["model_dir"] = None
    results["elapsed_s"] = time.time() - started
    print(f"\ntotal {results['elapsed_s']:.0f} s")
    document = common.write_json(args.out, "gpu_qlora", args, config, results)
    if args.workdir is None and not args.keep_model:
        shutil.rmtree(workdir, ignore_errors=True)
    return document


if __name__ == "__main__":
    main()
