"""bitsandbytes 4-bit settings and loading a base model (full precision or pre-quantized)."""
from __future__ import annotations

from playpen.api import PlaypenError

# how playpen loads a base by default (the learners' --bnb_4bit_* defaults, and the registry entry of an
# adapter whose run manifest does not say how it was trained)
DEFAULT_QUANTIZATION = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                        "bnb_4bit_compute_dtype": "auto"}


def resolve_compute_dtype(name: str) -> str:
    """``auto`` -> bfloat16 where the GPU supports it, float16 on other GPUs, float32 on CPU."""
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def quantization_settings(config) -> dict:
    """The JSON-able quantization settings of a learner config (compute dtype resolved)."""
    return {
        "load_in_4bit": config.load_in_4bit,
        "bnb_4bit_quant_type": config.bnb_4bit_quant_type,
        "bnb_4bit_use_double_quant": config.bnb_4bit_use_double_quant,
        "bnb_4bit_compute_dtype": resolve_compute_dtype(config.bnb_4bit_compute_dtype),
    }


def to_bnb_config(settings: dict):
    """A ``transformers.BitsAndBytesConfig`` from :func:`quantization_settings` output."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings["bnb_4bit_quant_type"],
        bnb_4bit_use_double_quant=settings["bnb_4bit_use_double_quant"],
        bnb_4bit_compute_dtype=getattr(torch, settings["bnb_4bit_compute_dtype"]),
    )


def _device_map():
    import torch

    if not torch.cuda.is_available():
        return None
    from accelerate import PartialState  # one GPU per process under `accelerate launch`

    return {"": PartialState().local_process_index}


def load_base_model(model_id: str, settings: dict, *, trust_remote_code: bool = False,
                    allow_pickle: bool = False, attn_implementation: str | None = None, token: str | None = None):
    """Load a causal LM for QLoRA; return ``(model, effective_settings)``.

    A checkpoint whose config carries a bitsandbytes ``quantization_config`` (e.g.
    ``unsloth/...-bnb-4bit``) is loaded as stored and its settings are reported as effective;
    otherwise the model is quantized at load with ``settings``. Weights load from safetensors
    only unless ``allow_pickle``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        hf_config = AutoConfig.from_pretrained(model_id, trust_remote_code=trust_remote_code, token=token)
    except OSError as error:
        raise PlaypenError(f"cannot load the base model '{model_id}': {error}".splitlines()[0]) from None
    stored = getattr(hf_config, "quantization_config", None)
    kwargs = dict(device_map=_device_map(), trust_remote_code=trust_remote_code, token=token,
                  use_safetensors=None if allow_pickle else True)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if stored:
        stored = stored if isinstance(stored, dict) else stored.to_dict()
        if stored.get("quant_method") != "bitsandbytes" or not stored.get("load_in_4bit"):
            raise PlaypenError(f"'{model_id}' is pre-quantized with {stored.get('quant_method')}; "
                               f"only bitsandbytes 4-bit checkpoints are supported")
        compute_dtype = str(stored.get("bnb_4bit_compute_dtype", "float32")).replace("torch.", "")
        effective = {"load_in_4bit": True, "prequantized": True,
                     "bnb_4bit_quant_type": stored.get("bnb_4bit_quant_type", "fp4"),
                     "bnb_4bit_use_double_quant": bool(stored.get("bnb_4bit_use_double_quant")),
                     "bnb_4bit_compute_dtype": compute_dtype}
        kwargs["dtype"] = getattr(torch, effective["bnb_4bit_compute_dtype"])
    elif settings["load_in_4bit"]:
        effective = dict(settings, prequantized=False)
        kwargs.update(quantization_config=to_bnb_config(settings),
                      dtype=getattr(torch, settings["bnb_4bit_compute_dtype"]))
    else:
        effective = dict(settings, prequantized=False)
        kwargs["dtype"] = getattr(torch, settings["bnb_4bit_compute_dtype"])
    try:
        model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    except OSError as error:
        hint = " (pass --allow_pickle to accept .bin weights)" if "safetensors" in str(error) else ""
        raise PlaypenError(f"cannot load the base model '{model_id}'{hint}: {str(error).splitlines()[0]}") from None
    except (ValueError, ImportError) as error:  # e.g. an unknown or unavailable --attn_implementation
        raise PlaypenError(f"cannot load the base model '{model_id}' with these settings: "
                           f"{str(error).splitlines()[0]}") from None
    return model, effective
