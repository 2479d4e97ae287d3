"""Overhead of ``playpen learn -l sft_qlora`` over a minimal hand-written TRL script.

Both sides train the same tiny Llama (built offline with ``playpen_tune.tiny``, quantized to
4-bit NF4 at load with the same BitsAndBytesConfig), with the same LoRA config, the same
SFTConfig values and the same JSON data file, for a fixed number of optimizer steps, each in a
fresh subprocess, interleaved after one warm-up round (none with --quick):

* ``playpen``: the real console script, ``playpen learn -l sft_qlora -m tiny-base ...``
  (data report, chat-template check, 4-bit load + LoRA, TRL SFTTrainer, adapter + manifest +
  model-registry entry);
* ``trl``: ``benchmarks/_trl_minimal.py`` - the same model/LoRA/SFTConfig in ~40 lines of TRL;
* ``peft`` (with ``--variants``): ``benchmarks/_peft_minimal.py`` - plain peft forward + backward +
  AdamW on random padded batches of the same data, no trainer: the floor.

``--model_dir DIR`` trains that model instead of the tiny one (e.g. SmolLM2-135M-Instruct, the
directory ``playpen gguf-model`` prints: a real 49k-token vocabulary), and ``--profile FILE.jsonl``
draws ``--examples`` conversations from a length profile (synthesised as in ``length_profile.py``)
instead of the SFT file, so the lengths are those of real clembench transcripts.

Measured per run:

* end to end: wall time of the whole process (interpreter start to exit);
* training loop: wall time of ``Trainer.train()``. Both processes get the same start-up hook
  (``benchmarks/_hooks/sitecustomize.py`` on PYTHONPATH) that wraps ``transformers.Trainer.train``
  when transformers loads it and writes entry/exit timestamps to a file, so playpen needs no
  instrumentation of its own and both sides are timed by identical code; set-up (process start
  to ``train()``) and finish (``train()`` return to exit: saving, manifest, registry) follow from
  the timestamps. The recorded loss history shows both sides really trained alike.

Target: playpen / trl <= 1.05x (end to end and training loop).

    python benchmarks/learner_overhead.py [--quick] [--runs N] [--steps N] [--out FILE.json]
        [--model_dir DIR] [--profile FILE.jsonl] [--max_length N] [--variants playpen,trl,peft]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 1.05
HOOKS = common.BENCH_DIR / "_hooks"
TRL_SCRIPT = common.BENCH_DIR / "_trl_minimal.py"
PEFT_SCRIPT = common.BENCH_DIR / "_peft_minimal.py"
VARIANTS = ("playpen", "trl", "peft")


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 120; 4 with --quick)")
    parser.add_argument("--examples", type=int, default=None,
                        help="rows of the data file (default 128; 16 with --quick)")
    parser.add_argument("--hidden_size", type=int, default=128, help="tiny model width")
    parser.add_argument("--num_layers", type=int, default=2, help="tiny model depth")
    parser.add_argument("--model_dir", type=Path, default=None,
                        help="train this model directory instead of a tiny one "
                             "(e.g. the one 'playpen gguf-model' prints)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="draw the conversations from this length profile (.jsonl, see length_profile.py)")
    parser.add_argument("--max_length", type=int, default=256, help="truncate examples to this many tokens")
    parser.add_argument("--assistant_only_loss", default="true", choices=["true", "false"],
                        help="false for a chat template without {%% generation %%} markers that TRL cannot patch "
                             "(SmolLM2's: the hand-written TRL script then fails, while playpen masks by prefix "
                             "rendering); the loss covers every token then, on both sides, at the same cost")
    parser.add_argument("--variants", default="playpen,trl",
                        help=f"comma-separated subset of {', '.join(VARIANTS)} (playpen and trl always run)")


def data_rows(count: int) -> tuple[list[dict], str]:
    """Rows of the shared clembench-evaluation SFT file, or demo-game rows if it is missing."""
    if common.SFT_FILE.is_file():
        rows = json.loads(common.SFT_FILE.read_text(encoding="utf-8"))
        return [{"messages": r["messages"]} for r in rows[:count]], str(common.SFT_FILE)
    from playpen_tune.games import demo_corpus

    prompts = [t for t in demo_corpus() if not t.startswith("ANSWER:")]
    rows = [{"messages": [{"role": "user", "content": p},
                          {"role": "assistant", "content": f"ANSWER: {p.split()[-1]}"}]} for p in prompts]
    return (rows * (count // max(1, len(rows)) + 1))[:count], "wordecho demo corpus (shared data missing)"


def register_model_dir(workspace: Path, model_dir: Path) -> Path:
    """Register ``model_dir`` as ``tiny-base`` (the name every variant uses) in the workspace registry."""
    from transformers import AutoTokenizer

    from playpen_tune.tiny import registry_entry

    eos = AutoTokenizer.from_pretrained(model_dir).eos_token
    (workspace / "model_registry.json").write_text(json.dumps([registry_entry("tiny-base", model_dir, eos_token=eos)]))
    return model_dir


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, add_arguments=add_arguments, argv=argv)
    steps = args.steps or (4 if args.quick else 120)
    examples = args.examples or (16 if args.quick else 128)
    variants = list(dict.fromkeys(["playpen", "trl"] + [v for v in args.variants.split(",") if v]))
    if set(variants) - set(VARIANTS):
        raise common.BenchmarkError(f"--variants: unknown {sorted(set(variants) - set(VARIANTS))}")
    common.set_offline()
    settings = dict(max_steps=steps, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                    max_length=args.max_length,
                    learning_rate=2e-4, logging_steps=max(1, steps // 4), save_steps=100_000, seed=42,
                    lora_r=16, lora_alpha=16, lora_dropout=0.05, gradient_checkpointing=True, packing=False,
                    assistant_only_loss=args.assistant_only_loss == "true")
    workspace = Path(tempfile.mkdtemp(prefix="bench-learner-"))
    if args.profile:
        import length_profile

        rows, source = length_profile.synthesise(args.profile, examples), f"length profile {args.profile}"
    else:
        rows, source = data_rows(examples)
    data_file = workspace / "data.json"
    data_file.write_text(json.dumps(rows), encoding="utf-8")
    if args.model_dir:
        model_dir = register_model_dir(workspace, args.model_dir.resolve())
    else:
        common.log(f"building the tiny model in {workspace}")
        model_dir = common.build_tiny_workspace(workspace, "tiny-base", corpus=common.message_texts(rows),
                                                hidden_size=args.hidden_size, num_layers=args.num_layers)
    env = common.offline_env(PYTHONPATH=os.pathsep.join(p for p in [str(HOOKS), os.environ.get("PYTHONPATH")] if p))
    counter = dict.fromkeys(variants, 0)

    def run(variant: str) -> dict:
        counter[variant] += 1
        out = workspace / "runs" / f"{variant}-{counter[variant]}"
        timing = workspace / "runs" / f"{variant}-{counter[variant]}.timing.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        if variant == "playpen":
            cmd = [common.VENV_BIN / "playpen", "learn", "-l", "sft_qlora", "-m", "tiny-base", "--dataset", data_file,
                   "--name", f"bench-{counter[variant]}", "--output_dir", out]
            for key in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
                        "learning_rate", "logging_steps", "save_steps", "seed", "lora_r", "lora_alpha",
                        "lora_dropout", "gradient_checkpointing", "packing", "assistant_only_loss"):
                value = settings[key]
                cmd += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
        else:
            spec = workspace / "runs" / f"{variant}-{counter[variant]}.settings.json"
            spec.write_text(json.dumps({**settings, "model": str(model_dir), "data": str(data_file),
                                        "output_dir": str(out)}))
            cmd = [sys.executable, TRL_SCRIPT if variant == "trl" else PEFT_SCRIPT, spec]
        launched = time.time()
        wall, _ = common.run_timed(cmd, cwd=workspace, env=dict(env, PLAYPEN_BENCH_TIMING=str(timing)), timeout=1800)
        exited = launched + wall
        calls = json.loads(timing.read_text())["calls"] if timing.exists() else []
        if len(calls) != 1:
            raise common.BenchmarkError(f"{variant}: expected one Trainer.train() call, recorded {len(calls)}")
        call = calls[0]
        if call["global_step"] != steps:
            raise common.BenchmarkError(f"{variant}: trained {call['global_step']} steps, expected {steps}")
        if not (out / "adapter_model.safetensors").is_file():
            raise common.BenchmarkError(f"{variant}: no adapter in {out}")
        tokens = call.get("num_tokens")
        return {"end_to_end_s": wall, "train_s": call["train_s"], "train_runtime": call["train_runtime"],
                "setup_s": call["train_began_unix"] - launched, "finish_s": exited - call["train_ended_unix"],
                "step_s": call["train_s"] / steps, "tokens": tokens,
                "tokens_per_s": tokens / call["train_s"] if tokens else None, "losses": call.get("losses")}

    results_raw = common.interleave({v: (lambda v=v: run(v)) for v in variants},
                                    runs=args.runs, warmup=0 if args.quick else 1)

    measures = ("end_to_end_s", "train_s", "setup_s", "finish_s", "step_s", "tokens_per_s")
    stats = {variant: {m: common.summary(r[m] for r in runs) for m in measures}
             for variant, runs in results_raw.items()}
    ratios = {m: common.compare([r[m] for r in results_raw["playpen"]], [r[m] for r in results_raw["trl"]])
              for m in ("end_to_end_s", "train_s")}
    floor = {f"{v}_over_peft_step_s": common.compare([r["step_s"] for r in results_raw[v]],
                                                      [r["step_s"] for r in results_raw["peft"]])
             for v in ("playpen", "trl") if "peft" in results_raw}
    overhead = common.summary(p["end_to_end_s"] - t["end_to_end_s"]
                              for p, t in zip(results_raw["playpen"], results_raw["trl"], strict=True))
    losses = {variant: runs[0]["losses"] for variant, runs in results_raw.items()}

    model_name = args.model_dir.name if args.model_dir else "tiny 4-bit Llama"
    common.print_table(f"playpen learn -l sft_qlora vs hand-written TRL: {steps} steps, {model_name} "
                       f"(seconds, median [min-max] of {args.runs} interleaved runs)",
                       ["variant", "end to end", "set-up", "train()", "finish", "step", "tokens/s"],
                       [[v] + [common.fmt_summary(stats[v][m]) for m in ("end_to_end_s", "setup_s", "train_s",
                                                                        "finish_s", "step_s", "tokens_per_s")]
                        for v in stats])
    for name, comparison in floor.items():
        print(f"{name}: {common.fmt_ratio(comparison, 3)}")
    common.print_table("Ratios playpen / trl (median ratio [min-max of per-round ratios])",
                       ["measure", "ratio", "target"],
                       [[m, common.fmt_ratio(c, 3),
                         f"<= {TARGET}x: {'met' if c['ratio'] is not None and c['ratio'] <= TARGET else 'MISSED'}"]
                        for m, c in ratios.items()])
    print(f"\nplaypen's extra end-to-end seconds per run: {common.fmt_summary(overhead)}")
    print(f"logged losses (first run) playpen: {losses['playpen']}\n"
          f"                            trl: {losses['trl']}")
    results = {"seconds": stats, "ratios": ratios, "over_peft_floor": floor, "overhead_s": overhead,
               "target_ratio": TARGET,
               "target_met": {m: c["ratio"] is not None and c["ratio"] <= TARGET for m, c in ratios.items()},
               "losses_first_run": losses, "runs": results_raw}
    config = dict(settings, examples=len(rows), data_source=source, hidden_size=args.hidden_size,
                  num_layers=args.num_layers, workspace=str(workspace), variants=variants,
                  model=str(args.model_dir) if args.model_dir else "tiny (built offline)",
                  playpen_command="playpen learn -l sft_qlora -m tiny-base --dataset data.json --max_steps "
                                  f"{steps} ...", trl_script=str(TRL_SCRIPT.relative_to(common.REPO)))
    document = common.write_json(args.out, "learner_overhead", args, config, results)
    import shutil

    shutil.rmtree(workspace, ignore_errors=True)
    return document


if __name__ == "__main__":
    main()
