"""Checks on LoRA adapter directories before anything loads them."""
from __future__ import annotations

import json
from pathlib import Path

from playpen.api import PlaypenError


def check_adapter_files(adapter_dir: Path, allow_pickle: bool) -> None:
    """Adapters load from safetensors only, unless the user allows pickle files."""
    if (adapter_dir / "adapter_model.safetensors").is_file():
        return
    if (adapter_dir / "adapter_model.bin").is_file():
        if allow_pickle:
            return
        raise PlaypenError(f"{adapter_dir} holds only adapter_model.bin (pickle, can run code); convert it "
                           f"to safetensors or pass --allow_pickle if you trust it")
    raise PlaypenError(f"{adapter_dir} holds no adapter (adapter_model.safetensors): check the path, or train "
                       f"that model again if its run did not finish")


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def adapter_config(adapter_dir: Path) -> dict:
    """The adapter's ``adapter_config.json`` (written by peft next to the weights)."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    if not config_path.is_file():
        raise PlaypenError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json); check the path")
    fix = "restore it from the training run (peft writes it with save_pretrained)"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as error:
        raise PlaypenError(f"{config_path} is not valid JSON ({error}); {fix}") from None
    if not isinstance(config, dict):
        raise PlaypenError(f"{config_path} holds a JSON {type(config).__name__}, not an object; {fix}")
    return config


def check_adapter_base(adapter_dir: Path, base_id: str) -> None:
    """The adapter must have been trained on ``base_id`` (its adapter_config.json says so)."""
    trained_on = adapter_config(adapter_dir).get("base_model_name_or_path")
    if trained_on and not _same_model(trained_on, base_id):
        raise PlaypenError(f"adapter {adapter_dir} was trained on '{trained_on}', but the base is '{base_id}'; "
                           f"pass the matching --base model")


def lora_shapes(adapter_dir: Path) -> dict[str, tuple[int, int]]:
    """``{module name: (in_features, out_features)}`` the adapter's LoRA weights expect, from the
    safetensors header (no tensor is read)."""
    import struct

    path = Path(adapter_dir) / "adapter_model.safetensors"
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    shapes: dict[str, dict] = {}
    for key, info in header.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key and key.endswith(".weight"):
                module = key.split(marker)[0].removeprefix("base_model.model.")
                shapes.setdefault(module, {})[part] = info["shape"]
    return {module: (parts["lora_A"][1], parts["lora_B"][0]) for module, parts in shapes.items()
            if len(parts.get("lora_A", ())) == 2 and len(parts.get("lora_B", ())) == 2}


def check_adapter_fits(adapter_dir: Path, base_id: str, trust_remote_code: bool = False) -> None:
    """Every LoRA module of the adapter must exist in the base with the shape the adapter expects.

    The base is built from its config on the meta device (no weights load). A base whose config cannot
    be read (a hub id offline, not cached) is not checked; a note says so.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (Path(adapter_dir) / "adapter_model.safetensors").is_file():
        return  # a pickle adapter (--allow_pickle): its shapes are checked when peft loads it
    try:
        config = AutoConfig.from_pretrained(base_id, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        print(f"note: the adapter's shapes were not checked against {base_id} ({str(error).splitlines()[0]})")
        return
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    modules = dict(base.named_modules())
    for name, (in_features, out_features) in sorted(lora_shapes(adapter_dir).items()):
        module = modules.get(name)
        if module is None:
            raise PlaypenError(f"adapter {adapter_dir} adapts {name}, which the base {base_id} does not have; it was "
                               f"trained on another model: pass the --base it was trained on")
        expected = (getattr(module, "in_features", None), getattr(module, "out_features", None))
        if expected != (in_features, out_features):
            raise PlaypenError(f"adapter {adapter_dir} does not fit the base {base_id}: {name} is {expected[0]}x"
                               f"{expected[1]} (in x out) in the base, {in_features}x{out_features} in the adapter; "
                               f"pass the --base it was trained on")
