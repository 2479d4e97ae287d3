"""Checks on LoRA adapter directories before anything loads them."""
from __future__ import annotations

import json
from pathlib import Path

from playpen.errors import PlaypenError


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


def check_adapter_base(adapter_dir: Path, base_id: str) -> None:
    """The adapter must have been trained on ``base_id`` (its adapter_config.json says so)."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    if not config_path.is_file():
        raise PlaypenError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json); check the path")
    trained_on = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if trained_on and not _same_model(trained_on, base_id):
        raise PlaypenError(f"adapter {adapter_dir} was trained on '{trained_on}', but the base is '{base_id}'; "
                           f"pass the matching --base model")
