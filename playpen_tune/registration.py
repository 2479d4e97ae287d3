"""Model-registry entries for tuned models (written after ``playpen learn`` and by ``playpen register``)."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from playpen.api import PlaypenError, refuse_file, upsert_entry, validate_model_name
from playpen_tune import manifest as manifest_io
from playpen_tune.adapters import check_adapter_base, check_adapter_files, check_adapter_fits
from playpen_tune.quantization import DEFAULT_QUANTIZATION

BACKEND_NAME = "playpen_qlora"  # the clemcore backend that plays tuned models (playpen_tune.backend)

# metadata copied from the base entry, as clemcore's packaged registry spells it
COPIED_KEYS = ["release_date", "open_weight", "parameters", "languages", "context_size", "license"]
# base model_config keys that describe how to load weights: replaced for a tuned model
REPLACED_CONFIG_KEYS = {"peft_model", "quantization", "load_in_4bit", "load_in_8bit", "allow_pickle"}


def check_name_is_free(name: str, base: dict, overwrite: bool = False,
                       replaceable: tuple[str, ...] = (BACKEND_NAME,)) -> None:
    """Refuse a registry name that would replace the base or a model of a backend not in ``replaceable``.

    Re-registering a playpen result under its own name is allowed (re-running a learn updates
    its entry); replacing anything else needs ``overwrite``.
    """
    if name == base["model_name"]:
        raise PlaypenError(f"the name '{name}' is the model being tuned; choose another --name")
    from clemcore.backends import ModelRegistry

    for spec in ModelRegistry.from_packaged_and_cwd_files():
        if spec["model_name"] == name and spec["backend"] not in replaceable and not overwrite:
            raise PlaypenError(f"a model named '{name}' (backend {spec['backend']}, {spec['lookup_source']}) is "
                               f"already registered; choose another --name, or pass --overwrite to replace it")


def check_loadable_entry(entry: dict, command: str) -> None:
    """A registry entry whose weights playpen loads needs ``huggingface_id`` (the hub id or directory of the
    weights); a tuned one (backend playpen_qlora) also ``model_config.peft_model``."""
    name = entry.get("model_name")
    if not entry.get("huggingface_id"):
        raise PlaypenError(f"the model registry entry of '{name}' has no 'huggingface_id' (the hub id or local "
                           f"directory of its weights), so {command} cannot load it; add it to the entry in "
                           f"./model_registry.json, or pick a model with local weights ('playpen list models')")
    if entry.get("backend") == BACKEND_NAME and not (entry.get("model_config") or {}).get("peft_model"):
        raise PlaypenError(f"the model registry entry of '{name}' (backend {BACKEND_NAME}) has no "
                           f"model_config.peft_model (its adapter directory); add it, or register the adapter "
                           f"again with 'playpen register'")


def end_of_turn_token(adapter_dir: Path) -> str:
    """The tokenizer's end-of-turn (eos) token, as saved next to the adapter."""
    path = Path(adapter_dir) / "tokenizer_config.json"
    eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token") if path.is_file() else None
    if isinstance(eos, dict):
        eos = eos.get("content")
    if not eos:
        raise PlaypenError(f"{adapter_dir} has no tokenizer_config.json with an eos_token; save the tokenizer "
                           f"next to the adapter")
    return eos


def build_entry(name: str, base: dict, adapter_dir: Path, allow_pickle: bool = False) -> dict:
    """The registry entry of base + adapter: base metadata, our backend, exact quantization."""
    adapter_dir = Path(adapter_dir).resolve()
    base_config = base.get("model_config", {})
    quantization = manifest_io.trained_quantization(adapter_dir) or dict(DEFAULT_QUANTIZATION)
    # everything clemcore needs from the base (templates, reasoning settings, api key flag, ...) is
    # kept; loading keys are replaced by the adapter and the quantization it was trained with
    model_config = {k: copy.deepcopy(v) for k, v in base_config.items() if k not in REPLACED_CONFIG_KEYS}
    model_config.update({
        "peft_model": str(adapter_dir),
        "quantization": quantization,
        "premade_chat_template": base_config.get("premade_chat_template", True),
        "eos_to_cull": "(?s)" + re.escape(end_of_turn_token(adapter_dir)) + ".*",
        "padding_side": base_config.get("padding_side", "left"),
    })
    if allow_pickle:
        model_config["allow_pickle"] = True
    entry = {"model_name": name, "backend": BACKEND_NAME, "huggingface_id": base["huggingface_id"]}
    entry.update({key: base[key] for key in COPIED_KEYS if key in base})
    entry["base_model"] = base.get("base_model", base["model_name"])
    entry["model_config"] = model_config
    return entry


def register_adapter(name: str, base: dict, adapter_dir: Path, allow_pickle: bool = False,
                     overwrite: bool = False) -> tuple[str, dict]:
    """Validate name and adapter against the base and upsert its entry in ./model_registry.json."""
    validate_model_name(name)  # a bad name is the first thing to say (upsert_entry guards it again)
    check_loadable_entry(base, "playpen register --base")
    check_name_is_free(name, base, overwrite)
    adapter_dir = refuse_file(adapter_dir, "--adapter")
    if not adapter_dir.is_dir():
        raise PlaypenError(f"adapter directory {adapter_dir} does not exist")
    check_adapter_files(adapter_dir, allow_pickle)
    check_adapter_base(adapter_dir, base["huggingface_id"])
    check_adapter_fits(adapter_dir, base["huggingface_id"],
                       trust_remote_code=bool((base.get("model_config") or {}).get("trust_remote_code")))
    entry = build_entry(name, base, adapter_dir, allow_pickle)
    return upsert_entry(entry), entry
