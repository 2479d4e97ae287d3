"""TrainerCallbacks of every QLoRA run: stop at the first non-finite loss or weight, write a short
manifest into every checkpoint, and print each logging step as one compact line above the bar."""
from __future__ import annotations

import math
from pathlib import Path

from playpen.api import PlaypenError
from playpen_tune import manifest as manifest_io
from playpen_tune.learners.output_dir import complete_checkpoints


def loss_guard_callback():
    """A TrainerCallback that stops at the first non-finite loss or trainable weight.

    Weights are checked at the end of every optimizer step, before the Trainer may checkpoint
    that step, so no checkpoint holding NaN/inf weights is ever written.
    """
    import torch
    from transformers import TrainerCallback

    class LossGuard(TrainerCallback):
        def __init__(self):
            self.bad_step = None
            self.reason = None

        def _stop(self, state, control, reason):
            self.bad_step, self.reason = state.global_step, reason
            control.should_training_stop = True
            control.should_save = False

        def on_step_end(self, args, state, control, model=None, **kwargs):
            trainable = [p for p in model.parameters() if p.requires_grad] if model is not None else []
            if trainable and not torch.stack([torch.isfinite(p).all() for p in trainable]).all():  # one sync
                self._stop(state, control, "trainable weights became NaN/inf")
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                self._stop(state, control, "training loss became NaN/inf")
            return control

    return LossGuard()


def raise_if_diverged(guard, output_dir: Path) -> None:
    """The user error of a run the guard stopped, naming the last good checkpoint."""
    if guard.bad_step is None:
        return
    checkpoints = complete_checkpoints(output_dir)
    kept = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved before it"
    raise PlaypenError(f"{guard.reason} at step {guard.bad_step}; {kept}; no adapter was written. "
                       f"Lower --learning_rate or check the data")


def checkpoint_manifest_callback(loading_facts: dict, run_dir: Path):
    """A TrainerCallback that writes a short manifest into every ``checkpoint-*`` it saves.

    It holds what loading needs (``loading_facts``: base, quantization, LoRA) plus the step, so that a
    checkpoint (``playpen register NAME --base MODEL --adapter RUN/checkpoint-N``, or ``-m`` of a later
    learn) loads exactly as trained, even if the run never finished.
    """
    from transformers import TrainerCallback

    class CheckpointManifest(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and checkpoint.is_dir():
                manifest_io.write_manifest(checkpoint, {**loading_facts, "checkpoint": {
                    "step": state.global_step, "run_dir": str(run_dir.resolve())}})
            return control

    return CheckpointManifest()


def log_line(logs: dict, step: int, max_steps: int) -> str:
    """One logging step as ``step 20/300: loss 3.612 | grad_norm 0.52 | ...`` (TRL's metric names, 4 digits)."""
    parts = [f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
             for key, value in logs.items() if key != "total_flos" and isinstance(value, (int, float))]
    return f"step {step}/{max_steps}: " + " | ".join(parts)


def replace_progress_callback(trainer) -> None:
    """Swap transformers' ``ProgressCallback`` (which prints each log as a raw dict) for one that prints
    :func:`log_line`; the step bar stays as it was."""
    from transformers.trainer_callback import ProgressCallback

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                self.training_bar.write(log_line(logs, state.global_step, state.max_steps))

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(CompactProgress())
