"""A run's output directory: refuse to mix runs, claim it once setup succeeded, remove it again if
setup fails, and check that the checkpoints will fit."""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from pathlib import Path

from playpen.api import (
    LearnRequest,
    PlaypenError,
    atomic_write_text,
    check_free_space,
    config_to_dict,
    refuse_file,
    without_secrets,
)
from playpen_tune import manifest as manifest_io

RUN_IDENTITY_FILE = "playpen_run_identity.json"
# fields that may change when a run is resumed (they do not change what is being trained)
RESUMABLE_CHANGES = {"max_steps", "num_train_epochs", "save_steps", "save_total_limit", "logging_steps",
                     "eval_steps", "report_to", "output_dir"}


def _is_complete_checkpoint(path: Path) -> bool:
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """The ``checkpoint-*`` dirs of a run, oldest step first, without ones a crash cut off.

    transformers writes ``trainer_state.json`` last: a checkpoint without a readable one is incomplete.
    """
    return sorted((p for p in output_dir.glob("checkpoint-*") if _is_complete_checkpoint(p)),
                  key=lambda p: int(p.name.split("-")[-1]))


def check_output_dir(request: LearnRequest) -> Path | None:
    """Refuse to mix runs; return the checkpoint to resume from (``--resume``), if any."""
    out = refuse_file(request.output_dir, "output_dir")
    busy = out.exists() and any(out.iterdir())
    if request.resume:
        checkpoints = complete_checkpoints(out) if busy else []
        if not checkpoints:
            raise PlaypenError(f"--resume: no complete checkpoint-* directory in {out}; run without --resume")
        return checkpoints[-1]
    if busy and not request.overwrite:
        previous = manifest_io.read_manifest(out)
        what = f"a run of {previous['learner']['name']}" if previous else "files"
        raise PlaypenError(f"output_dir {out} already holds {what}; pass --resume to continue it, "
                           f"--overwrite to train into it again (the earlier files move to previous-*/), "
                           f"or choose another --output_dir / --name")
    return None


def claim_output_dir(request: LearnRequest, data_fingerprint: str, accelerator) -> None:
    """Create the output dir once setup succeeded, and tie it to this run.

    ``--overwrite`` moves everything an earlier run left into ``previous-<time>/`` (nothing is
    deleted). ``--resume`` checks that learner, data and config (but for the step/save/log
    fields) are those of the run that wrote the checkpoints. With several processes
    (``accelerate launch``, ``torchrun``) the main process claims the directory once every
    process has checked it (:func:`check_output_dir`); the others wait until it has.
    """
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _claim_output_dir(request, data_fingerprint)
    accelerator.wait_for_everyone()


def _claim_output_dir(request: LearnRequest, data_fingerprint: str) -> None:
    out = request.output_dir
    identity = {"learner": request.learner, "model": request.model["model_name"], "data_fingerprint": data_fingerprint,
                "config": {k: v for k, v in without_secrets(config_to_dict(request.config)).items()
                           if k not in RESUMABLE_CHANGES}}
    path = out / RUN_IDENTITY_FILE
    if request.resume:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if recorded is not None:
            config = recorded["config"]
            changed = sorted(k for k in identity if k != "config" and recorded.get(k) != identity[k])
            changed += sorted(k for k in identity["config"] if k in config and config[k] != identity["config"][k])
            if changed:
                raise PlaypenError(f"--resume: {out} holds a run with a different {', '.join(changed)}; resume with "
                                   f"the same settings, or start a new run (--overwrite or another --name)")
            new = sorted(k for k in identity["config"] if k not in config)
            if new:  # fields an earlier playpen-tune did not have: the run goes on with their values now
                values = ", ".join(f"{key} (now {identity['config'][key]!r})" for key in new)
                print(f"note: --resume: {out} was started by an earlier playpen-tune that had no {values}")
    elif request.overwrite and out.exists() and any(out.iterdir()):
        archive = out / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
        archive.mkdir()
        for child in list(out.iterdir()):
            if not child.name.startswith("previous-"):
                shutil.move(str(child), str(archive / child.name))
        print(f"note: --overwrite: the earlier run's files were moved to {archive}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(identity, indent=2) + "\n")


@contextlib.contextmanager
def removed_if_setup_fails(output_dir: Path):
    """Remove ``output_dir`` again if it did not exist and setup (before training) fails.

    transformers' Trainer creates the directory on construction; a run that never started
    training must not leave it behind. An existing directory is never touched; parents this run
    created (``models/``) are removed too while they are empty.
    """
    output_dir = output_dir.absolute()
    missing = [output_dir, *(p for p in output_dir.parents if not p.exists())] if not output_dir.exists() else []
    try:
        yield
    except BaseException:
        if missing and output_dir.exists():
            shutil.rmtree(output_dir)
            for parent in missing[1:]:  # models/ too, if this run created it, and only while empty
                try:
                    parent.rmdir()
                except OSError:
                    break
        raise


def saved_bytes(trainer) -> tuple[int, int]:
    """About what the adapter and what one checkpoint take on disk: the trainable weights, and those
    plus their optimizer state (Adam keeps two fp32 moments per weight; 8-bit optimizers one byte each)."""
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    adapter = sum(p.numel() * p.element_size() for p in trainable)
    moments = sum(p.numel() for p in trainable) * (2 if "8bit" in trainer.args.optim else 8)
    return adapter, adapter + moments


def check_room_for_checkpoints(trainer, output_dir: Path) -> None:
    """Refuse to start when the output filesystem clearly cannot hold the checkpoints and the adapter.

    The estimate is one checkpoint (:func:`saved_bytes`) times the checkpoints on disk at once
    (``save_total_limit`` plus the one being written, at most one per ``save_steps``), plus the adapter.
    """
    args = trainer.args
    steps = args.max_steps if args.max_steps > 0 else math.ceil(
        len(trainer.get_train_dataloader()) / args.gradient_accumulation_steps * args.num_train_epochs)
    saves = steps // args.save_steps
    if args.save_total_limit:
        saves = min(saves, args.save_total_limit + 1)
    adapter, checkpoint = saved_bytes(trainer)
    check_free_space(
        output_dir, saves * checkpoint + adapter,
        f"{saves} checkpoint(s) of ~{checkpoint / 2**20:.1f} MiB (save_total_limit "
        f"{args.save_total_limit}, save_steps {args.save_steps}) and the adapter",
        "lower --save_total_limit, raise --save_steps, or choose another --output_dir")
