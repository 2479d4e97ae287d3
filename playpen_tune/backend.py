"""The clemcore backend ``playpen_qlora``: the 4-bit base plus adapter, exactly as trained.

Registered through the ``playpen_register_backends`` hook (so ``playpen eval``/``run`` find
it) and, for plain ``clem run``, through a one-line ``playpen_qlora_api.py`` shim written by
``playpen install-backend``. Generation, batching, chat templates and context checks are
clemcore's own (``HuggingfaceLocalModel``); only model loading differs: quantization comes
from the adapter's run manifest (else the registry entry), never from clemcore's fp4 default.
"""
from __future__ import annotations

from pathlib import Path

import clemcore.backends as backends
from clemcore.backends.huggingface_local_api import (
    HuggingfaceLocalModel,
    _context_size_from_config,
    load_config_and_tokenizer,
)

from playpen.api import PlaypenError
from playpen_tune import manifest as manifest_io
from playpen_tune.adapters import check_adapter_base, check_adapter_files
from playpen_tune.credentials import hub_token
from playpen_tune.quantization import load_base_model, resolve_compute_dtype
from playpen_tune.registration import BACKEND_NAME

SHIM_FILE = "playpen_qlora_api.py"


def recorded_quantization(model_spec) -> dict:
    """The quantization the adapter was trained with: manifest first, then the registry entry (an entry
    without adapter, a 4-bit base of ``eval --baseline_4bit``, has its quantization in the entry only)."""
    config = model_spec.model_config
    adapter = config.get("peft_model")
    settings = (manifest_io.trained_quantization(Path(adapter)) if adapter else None) or config.get("quantization")
    if not settings:
        raise PlaypenError(f"model '{model_spec.model_name}': no quantization recorded in the adapter's "
                           f"{manifest_io.MANIFEST_NAME} or in the registry entry's model_config.quantization")
    settings = dict(settings)
    settings["bnb_4bit_compute_dtype"] = resolve_compute_dtype(settings.get("bnb_4bit_compute_dtype", "auto"))
    return settings


def load_tuned_model(model_spec):
    """Load base (4-bit, recorded settings) + adapter (safetensors), ready for generation."""
    from peft import PeftModel

    config = model_spec.model_config
    if "peft_model" not in config:
        if config.get("quantization"):  # a 4-bit base alone (eval --baseline_4bit)
            return load_base_only(model_spec)
        raise PlaypenError(f"model '{model_spec.model_name}' has no model_config.peft_model; "
                           f"register it with 'playpen register'")
    adapter = Path(config["peft_model"])
    if not adapter.is_dir():
        raise PlaypenError(f"model '{model_spec.model_name}': adapter directory {adapter} does not exist")
    allow_pickle = bool(config.get("allow_pickle"))
    check_adapter_files(adapter, allow_pickle)
    check_adapter_base(adapter, model_spec.huggingface_id)
    base, _ = load_base_model(model_spec.huggingface_id, recorded_quantization(model_spec),
                              trust_remote_code=bool(config.get("trust_remote_code")), allow_pickle=allow_pickle,
                              attn_implementation=config.get("attn_implementation"),
                              token=hub_token(model_spec.to_dict()))
    model = PeftModel.from_pretrained(base, str(adapter), use_safetensors=not allow_pickle)
    model.eval()
    return model


def load_base_only(model_spec):
    """The base alone, loaded with the quantization of the entry (the 4-bit base an adapter was trained on)."""
    config = model_spec.model_config
    base, _ = load_base_model(model_spec.huggingface_id, recorded_quantization(model_spec),
                              trust_remote_code=bool(config.get("trust_remote_code")),
                              attn_implementation=config.get("attn_implementation"),
                              token=hub_token(model_spec.to_dict()))
    base.eval()
    return base


def model_loading(model_entry: dict) -> dict | None:
    """``{"quantization", "adapter"}`` of a ``playpen_qlora`` entry as this backend loads it, else None."""
    from clemcore.backends import ModelSpec

    if model_entry.get("backend") != BACKEND_NAME:
        return None
    spec = ModelSpec.from_dict(model_entry)
    adapter = spec.model_config.get("peft_model")
    return {"quantization": recorded_quantization(spec), "adapter": adapter}


class QLoRAModel(HuggingfaceLocalModel):
    """clemcore's HF model class with playpen's loading (4-bit base + LoRA adapter)."""

    def __init__(self, model_spec: backends.ModelSpec):  # not the parent's __init__: it would load with fp4
        backends.BatchGenerativeModel.__init__(self, model_spec)
        self.tokenizer, self.config = load_config_and_tokenizer(model_spec)
        self.context_size = _context_size_from_config(self.config, model_spec, self.tokenizer)
        self.model = load_tuned_model(model_spec)
        self.chat_template_kwargs = model_spec.model_config.get("chat_template_kwargs", {})
        if not self.model.generation_config.pad_token_id:
            self.model.generation_config.pad_token_id = self.tokenizer.eos_token_id
        self.device = next(self.model.parameters()).device


class QLoRABackend(backends.Backend):
    """Backend for registry entries with ``"backend": "playpen_qlora"``."""

    def get_model_for(self, model_spec: backends.ModelSpec) -> backends.Model:
        return QLoRAModel(model_spec)


def write_clem_shim(directory: Path) -> Path:
    """Write ``playpen_qlora_api.py`` so that clemcore's own CLI finds this backend in ``directory``."""
    from playpen.api import atomic_write_text

    path = Path(directory) / SHIM_FILE
    atomic_write_text(path, "# Written by 'playpen install-backend': lets 'clem run' load playpen_qlora models.\n"
                            "from playpen_tune.backend import QLoRABackend  # noqa: F401\n")
    return path
