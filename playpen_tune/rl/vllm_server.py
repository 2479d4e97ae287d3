"""``grpo_qlora --use_vllm``: the rollouts generate on a vLLM server that holds the policy's weights.

TRL's GRPOTrainer talks to the server (``vllm_mode="server"``, :class:`trl.generation.vllm_client.VLLMClient`)
and syncs the weights before each step's rollouts (``VLLMGeneration.sync_weights``). Its own sync merges
the LoRA adapter into the base and pushes the merged parameters; on a 4-bit bitsandbytes base those are
packed NF4 storage that vLLM cannot load, and merging then unmerging re-quantizes the base each step,
so the weights being trained drift. :func:`merged_weights` computes what vLLM needs instead: every
weight under the base checkpoint's name, each 4-bit weight dequantized, plus the active adapter's
LoRA delta, without changing the model. :func:`push_merged_weights` makes TRL's sync push those.

The server serves the *unquantized* base (the same ``huggingface_id``) on another GPU than the
trainer's (the NCCL sync cannot share a device), started as TRL documents::

    VLLM_SERVER_DEV_MODE=1 vllm serve BASE --weight-transfer-config '{"backend": "nccl"}' \\
        --logprobs-mode processed_logprobs --max-logprobs -1
"""
from __future__ import annotations

import importlib.util
import os

from playpen.api import PlaypenError
from playpen_tune.merging import merged_weights


def check_vllm_usable() -> None:
    """``--use_vllm`` needs vLLM, a CUDA GPU (the weight sync runs on NCCL) and one training process."""
    if importlib.util.find_spec("vllm") is None:
        raise PlaypenError("--use_vllm needs vLLM: pip install 'playpen-tune[vllm]' on a machine with a CUDA GPU, "
                           "or drop --use_vllm (the rollouts then generate with the live policy in transformers)")
    import torch

    if not torch.cuda.is_available():
        raise PlaypenError("--use_vllm needs a CUDA GPU: TRL syncs the weights to the vLLM server over NCCL; "
                           "drop --use_vllm on this machine")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PlaypenError("--use_vllm runs in one training process (its rollouts generate through the main "
                           "process's vLLM client); launch without accelerate's multi-process mode or drop --use_vllm")


def push_merged_weights(generation, dtype) -> None:
    """Make TRL's vLLM weight sync (``VLLMGeneration.sync_weights``) push :func:`merged_weights`.

    TRL 1.x streams ``generation._iter_named_params()`` to the server (it reads it once for the
    names, dtypes and shapes, then once per sync); this replaces that iterator on this instance.
    """
    if not callable(getattr(generation, "_iter_named_params", None)):
        raise PlaypenError("this TRL version's vLLM weight sync has no _iter_named_params; --use_vllm is tested "
                           "with trl 1.16: install that or drop --use_vllm")
    generation._iter_named_params = lambda: merged_weights(generation.model, dtype)


def generate_on_server(client, contexts: list[list[int]], temperature: float, max_tokens: int):
    """One completion per context (token ids) from the vLLM server: ``(completion_ids, logprobs)``, the
    sampled tokens' log-probabilities after temperature (TRL's importance-sampling correction uses them)."""
    output = client.generate(prompts=contexts, n=1, temperature=temperature, max_tokens=max_tokens, logprobs=0)
    logprobs = [[token[0] for token in sequence] for sequence in output["logprobs"]]  # None: vLLM had a NaN
    return output["completion_ids"], logprobs


class ServerGenerator:
    """The rollouts' generator (:class:`playpen_tune.rl.rollout.Generator`) on TRL's vLLM client."""

    def __init__(self, client):
        self.client = client

    def generate(self, contexts: list[list[int]], temperature: float, max_tokens: int):
        return generate_on_server(self.client, contexts, temperature, max_tokens)
