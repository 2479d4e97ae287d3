"""``grpo_qlora --use_vllm``: the rollouts generate on a vLLM server that serves the base and the policy's
LoRA adapter, reloaded in place after each optimizer step.

TRL's own server mode syncs the whole model over NCCL (a second GPU, the dequantized weights streamed
every step, no CPU at all). A LoRA policy needs far less: the adapter is a few MB, and vLLM reloads it
under the same name (``POST /v1/load_lora_adapter`` with ``load_inplace``) in tens of milliseconds. So
the server serves the base unquantized (or ``--vllm_quantization bitsandbytes`` on a GPU, the 4-bit base
as trained) on the trainer's own device or the CPU, and:

- :class:`VLLMGenerator` is the ``generator`` of the rollouts' policy model: token-id contexts go to
  ``/v1/completions`` and the sampled token ids come back with their log-probabilities (the server runs
  with ``--logprobs-mode processed_logprobs``: after temperature, as TRL's correction expects);
- :class:`AdapterSync` takes the place of TRL's ``vllm_generation``: TRL calls its ``sync_weights()``
  before the first rollout of every step (``rollout_func`` path), and it saves the adapter and reloads it.

TRL's importance-sampling correction runs only when the trainer has ``use_vllm``; :func:`attach_server`
sets that on the trainer (its ``GRPOConfig`` has ``use_vllm=False``, so TRL builds no NCCL client), and
TRL then logs ``sampling/sampling_logp_difference/mean``, the per-step policy/server mismatch that the
manifest's reward history keeps.
"""
from __future__ import annotations

import atexit
import os
import shlex
from pathlib import Path

from playpen.api import PlaypenError, ServerSettings, VLLMServer

ADAPTER_NAME = "policy"
SYNC_DIR = "vllm-adapter"  # in the output directory: the adapter as last sent to the server
SERVER_ARGS = ["--logprobs-mode", "processed_logprobs"]
AFTER_FAILURE = ("the run's checkpoints are kept: once a server answers, continue with --resume (or start again "
                 "with --overwrite if none was saved)")


def check_vllm_usable() -> None:
    """``--use_vllm`` runs in one training process (its rollouts generate through the main process's server)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PlaypenError("--use_vllm runs in one training process (its rollouts generate through the main "
                           "process's vLLM server); launch without accelerate's multi-process mode or drop --use_vllm")


class VLLMGenerator:
    """The rollouts' ``generator``: one sampled completion per token-id context from the served adapter."""

    def __init__(self, server: VLLMServer, eos_token_id: int, adapter: str = ADAPTER_NAME):
        self.server, self.eos_token_id, self.adapter = server, eos_token_id, adapter

    def generate(self, contexts: list[list[int]], temperature: float,
                 max_tokens: int) -> tuple[list[list[int]], list[list[float]] | None]:
        """``(completion token ids, their log-probabilities)`` per context; a completion ends with eos or at
        ``max_tokens``. vLLM gives None for a NaN log-probability (TRL's correction ignores those tokens)."""
        completions = self.server.complete(self.adapter, contexts, temperature=temperature, max_tokens=max_tokens,
                                           stop_token_ids=[self.eos_token_id], logprobs=True)
        return [ids for ids, _ in completions], [logprobs for _, logprobs in completions]


class AdapterSync:
    """Stands in for TRL's ``VLLMGeneration``: ``sync_weights()`` saves the live adapter and reloads it in the
    server in place; ``generator`` generates with it."""

    def __init__(self, model, server: VLLMServer, directory: Path, eos_token_id: int):
        self.model, self.server, self.directory = model, server, Path(directory)
        self.generator = VLLMGenerator(server, eos_token_id)
        self.syncs = 0

    def sync_weights(self) -> None:
        self.model.save_pretrained(str(self.directory), selected_adapters=["default"])
        self.server.load_adapter(ADAPTER_NAME, str(self.directory))
        self.syncs += 1

    def stop(self) -> None:
        self.server.stop()


def start_server(config, base: str, lora_rank: int, output_dir: Path) -> VLLMServer:
    """The server of ``--use_vllm``: ``--vllm_server_base_url``, or one started from ``--vllm_python`` (log in the
    output directory) that is stopped when the training ends or the process exits."""
    settings = ServerSettings(url=config.vllm_server_base_url, python=config.vllm_python,
                              quantization=config.vllm_quantization,
                              extra_args=SERVER_ARGS + shlex.split(config.vllm_args or ""),
                              ready_timeout=config.vllm_server_timeout, after_failure=AFTER_FAILURE)
    server = VLLMServer(settings, base, [lora_rank], Path(output_dir)).__enter__()
    atexit.register(server.stop)  # a run that raises still stops it
    return server


def attach_server(trainer, server: VLLMServer, output_dir: Path, eos_token_id: int,
                  importance_sampling_correction: bool) -> AdapterSync:
    """Make TRL's GRPOTrainer sync the adapter to ``server`` before each step's rollouts and correct for the
    server's log-probabilities (TRL 1.x: ``use_vllm``, ``vllm_generation``, ``_last_loaded_step``)."""
    from transformers import TrainerCallback

    model = trainer.accelerator.unwrap_model(trainer.model)
    sync = AdapterSync(model, server, Path(output_dir) / SYNC_DIR, eos_token_id)
    trainer.use_vllm = True
    trainer.vllm_importance_sampling_correction = importance_sampling_correction
    trainer.vllm_generation = sync
    trainer._last_loaded_step = -1  # the first rollout syncs (loads the starting adapter)

    class StopServer(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            sync.stop()

    trainer.add_callback(StopServer())
    return sync
