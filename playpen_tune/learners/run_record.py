"""What a QLoRA run records: the facts collected while it runs, the held-out loss, and at the end the
saved adapter, the manifest ``playpen_run.json`` and the registry entry of the result."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from playpen.api import LearnerResult, LearnRequest, config_to_dict, redact_command_line, without_secrets
from playpen_tune import manifest as manifest_io
from playpen_tune.registration import build_entry

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", manifest_io.MANIFEST_NAME)


@dataclass
class RunRecord:
    """Facts collected during a run, turned into the manifest by :func:`finish_run`.

    ``resume_from`` is the one resume fact: the checkpoint training continues from (``--resume``), or None.
    """

    request: LearnRequest
    data: dict
    quantization: dict
    lora: dict
    started: float
    resume_from: Path | None = None
    extra: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # learner-specific additions to the manifest's metrics
    curves: dict = field(default_factory=dict)  # panels of training_curves.png besides the loss (learners.curves)

    def what_was_trained(self) -> dict:
        """The manifest keys that say how to load what a run trained: learner, base, quantization, LoRA."""
        return {
            "format": 1,
            "learner": {"name": self.request.learner, "version": manifest_io.library_versions()["playpen-tune"]},
            "name": self.request.name,
            "base_model": without_secrets(self.request.model),
            "quantization": self.quantization,
            "lora": self.lora,
        }


def report_held_out_loss(record: RunRecord, trainer) -> None:
    """Record the final and lowest held-out loss (evaluating once more unless the last step was) and print them."""
    evaluated = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if not evaluated or evaluated[-1]["step"] != trainer.state.global_step:
        trainer.evaluate()  # logged into log_history at the last step
        evaluated = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    best = min(evaluated, key=lambda entry: entry["eval_loss"])
    metrics = record.metrics
    metrics.update(final_eval_loss=evaluated[-1]["eval_loss"], best_eval_loss=best["eval_loss"],
                   best_eval_step=best["step"])
    before = f"{metrics['first_eval_loss']:.4f} before training, " if "first_eval_loss" in metrics else ""
    print(f"held-out loss: {before}{metrics['final_eval_loss']:.4f} at the end (step {evaluated[-1]['step']}), "
          f"lowest {best['eval_loss']:.4f} at step {best['step']}")
    checkpoint = record.request.output_dir / f"checkpoint-{best['step']}"
    if best["step"] != evaluated[-1]["step"] and checkpoint.is_dir():
        print(f"  {checkpoint} holds the lowest; to play it: playpen register <name> --base "
              f"{record.request.model['model_name']} --adapter {checkpoint}")


def quantized_modules(model) -> dict:
    """Which bitsandbytes layer class the trained model's linear layers are, and how many."""
    counts: dict[str, int] = {}
    for module in model.modules():
        cls = type(module)
        if cls.__module__.startswith("bitsandbytes"):
            name = f"{cls.__module__}.{cls.__qualname__}"
            counts[name] = counts.get(name, 0) + 1
    return counts


def finish_run(record: RunRecord, trainer, tokenizer) -> LearnerResult:
    """Save adapter + tokenizer into the output dir, write the manifest, build the result and its registry entry.

    Under ``accelerate launch`` with several processes only the main process writes files and
    returns a registry entry; the others return a result without one.
    """
    out = record.request.output_dir
    main_process = trainer.accelerator.is_main_process
    try:
        result = _save_and_describe(record, trainer, tokenizer, main_process)
    except BaseException:  # a full disk, an interrupt: no adapter is left that a later run could take as complete
        if main_process:
            for name in ADAPTER_FILES:
                (out / name).unlink(missing_ok=True)
        raise
    if main_process:  # built from the saved files, so it loads what was trained (the files stay if it fails)
        result.registry_entry = build_entry(record.request.name, record.request.model, out)
    return result


def _save_and_describe(record: RunRecord, trainer, tokenizer, main_process: bool) -> LearnerResult:
    out = record.request.output_dir
    if main_process:
        trainer.model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    losses = [{"step": entry["step"], "loss": entry["loss"]} for entry in history]
    metrics = {"global_step": trainer.state.global_step,
               "first_loss": losses[0]["loss"] if losses else None,
               "final_loss": losses[-1]["loss"] if losses else None,
               "wall_time_s": round(time.time() - record.started, 2)}
    metrics.update(record.metrics)
    request = record.request
    manifest = {
        **record.what_was_trained(),
        "config": without_secrets(config_to_dict(request.config)),
        "quantized_modules": quantized_modules(trainer.model),
        "data": record.data,
        "seed": request.config.seed,
        "processes": trainer.args.world_size,  # data-parallel processes (accelerate launch / torchrun)
        "resumed_from": str(record.resume_from) if record.resume_from else None,
        "metrics": metrics,
        "loss_history": losses,
        "eval_loss_history": [{"step": entry["step"], "eval_loss": entry["eval_loss"]}
                              for entry in trainer.state.log_history if "eval_loss" in entry],
        "versions": manifest_io.library_versions(),
        "command_line": redact_command_line(request.command_line),
        **record.extra,
    }
    if not main_process:
        return LearnerResult(output_dir=out, adapter_dir=out, metrics=metrics)
    manifest["curves"] = write_training_curves(record, trainer).name
    path = manifest_io.write_manifest(out, manifest)
    return LearnerResult(output_dir=out, adapter_dir=out, manifest_path=path, metrics=metrics)


def write_training_curves(record: RunRecord, trainer) -> Path:
    """``training_curves.png`` in the output dir: the loss (train, held-out) and the learner's own panels."""
    from playpen_tune.learners.curves import CURVES_FILE, logged_series, write_curves

    history = trainer.state.log_history
    panels = {"loss": {"train": logged_series(history, "loss"), "held-out": logged_series(history, "eval_loss")},
              **record.curves}
    return write_curves(record.request.output_dir / CURVES_FILE, panels,
                        f"{record.request.learner}: {record.request.name}")
