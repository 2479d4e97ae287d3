"""A LoRA policy's weights with the adapter folded in: the merge of ``playpen export`` (``grpo_qlora
--use_vllm`` sends the adapter itself to the server, see :mod:`playpen_tune.rl.vllm_server`).

peft's own ``merge_and_unload`` adds the delta into the bitsandbytes layer and re-quantizes it to
NF4, which loses the delta's precision; here every 4-bit weight is dequantized and the delta of
each active adapter is added in fp32, without changing the model.
"""
from __future__ import annotations

from collections.abc import Iterator


def merged_weights(model, dtype, lora_scale: float = 1.0) -> Iterator[tuple[str, object]]:
    """The policy's weights as the base checkpoint names them, in ``dtype``, one tensor at a time.

    A bitsandbytes 4-bit weight is dequantized; a layer with LoRA gets ``lora_scale`` times the delta
    of each active adapter (not TRL's frozen ``ref`` copy), added in fp32. ``lora_scale`` 0 gives the
    dequantized base, 1 the adapter as trained. The model is not changed.
    """
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_bnb_weight

    active = getattr(model, "active_adapters", [])
    lora_of = {id(module.get_base_layer().weight): module
               for module in model.modules() if isinstance(module, LoraLayer)}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_" in name:  # the adapter's own parameters: the merged model has none, they are in the deltas
                continue
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            quantized = param.__class__.__name__ == "Params4bit"
            weight = (dequantize_bnb_weight(param) if quantized else param.data).float()
            lora = lora_of.get(id(param))
            adapters = [adapter for adapter in active if lora is not None and adapter in lora.lora_A]
            for adapter in adapters:
                weight = weight + lora_scale * lora.get_delta_weight(adapter).float()
            yield name, weight.to(dtype)
