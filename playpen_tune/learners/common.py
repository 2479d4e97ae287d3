"""What ``sft_qlora`` and ``dpo_qlora`` share: output dir checks, 4-bit base + LoRA, TRL
arguments, loss tracking, saving and the manifest. The learner modules only wire a TRL trainer."""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from playpen import faults
from playpen.config import config_to_dict
from playpen.errors import PlaypenError
from playpen.learners import LearnerResult, LearnRequest
from playpen.paths import refuse_file
from playpen.registry import atomic_write_text
from playpen.secrets import redact_command_line, without_secrets
from playpen_tune import manifest as manifest_io
from playpen_tune.adapters import check_adapter_files
from playpen_tune.credentials import hub_token
from playpen_tune.plugin import BACKEND_NAME
from playpen_tune.quantization import load_base_model, quantization_settings


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


RUN_IDENTITY_FILE = "playpen_run_identity.json"
# fields that may change when a run is resumed (they do not change what is being trained)
RESUMABLE_CHANGES = {"max_steps", "num_train_epochs", "save_steps", "save_total_limit", "logging_steps",
                     "eval_steps", "report_to", "output_dir"}


def claim_output_dir(request: LearnRequest, learner: str, data_fingerprint: str, accelerator) -> None:
    """Create the output dir once setup succeeded, and tie it to this run.

    ``--overwrite`` moves everything an earlier run left into ``previous-<time>/`` (nothing is
    deleted). ``--resume`` checks that learner, data and config (but for the step/save/log
    fields) are those of the run that wrote the checkpoints. With several processes
    (``accelerate launch``, ``torchrun``) the main process claims the directory once every
    process has checked it (:func:`check_output_dir`); the others wait until it has.
    """
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _claim_output_dir(request, learner, data_fingerprint)
    accelerator.wait_for_everyone()


def _claim_output_dir(request: LearnRequest, learner: str, data_fingerprint: str) -> None:
    out = request.output_dir
    identity = {"learner": learner, "model": request.model["model_name"], "data_fingerprint": data_fingerprint,
                "config": {k: v for k, v in without_secrets(config_to_dict(request.config)).items()
                           if k not in RESUMABLE_CHANGES}}
    path = out / RUN_IDENTITY_FILE
    if request.resume:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if recorded is not None and recorded != identity:
            changed = sorted(k for k in identity if k != "config" and recorded.get(k) != identity[k])
            changed += sorted(k for k in identity["config"] if recorded["config"].get(k) != identity["config"][k])
            raise PlaypenError(f"--resume: {out} holds a run with a different {', '.join(changed)}; resume with "
                               f"the same settings, or start a new run (--overwrite or another --name)")
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


def parent_adapter(model: dict) -> Path | None:
    """The adapter of a tuned registry entry (``-m`` names an earlier playpen result)."""
    if model.get("backend") != BACKEND_NAME:
        return None
    return Path(model["model_config"]["peft_model"])


def trusts_remote_code(model: dict, config) -> bool:
    """Remote code runs only if the config or the registry entry asks for it."""
    return bool(config.trust_remote_code or (model.get("model_config") or {}).get("trust_remote_code"))


def load_tokenizer(model: dict, config):
    from transformers import AutoTokenizer

    parent = parent_adapter(model)
    if parent is not None:  # the tokenizer was saved with the adapter: an incomplete adapter dir is caught here
        check_adapter_files(parent, config.allow_pickle)
    source = parent or model["huggingface_id"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trusts_remote_code(model, config),
                                                  token=hub_token(model))
    except OSError as error:
        raise PlaypenError(f"cannot load the tokenizer of '{model['model_name']}' from {source}: "
                           f"{str(error).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def with_chat_template_kwargs(dataset, model: dict):
    """Add the registry entry's ``chat_template_kwargs`` (e.g. ``enable_thinking``) to every row.

    clemcore renders prompts with them at inference; TRL applies a row's ``chat_template_kwargs``
    when it renders that row, so training sees the same template. Returns (dataset, kwargs).
    """
    kwargs = (model.get("model_config") or {}).get("chat_template_kwargs") or {}
    if kwargs:
        dataset = dataset.map(lambda row: {"chat_template_kwargs": dict(kwargs)})
    return dataset, kwargs


def load_training_data(config, load):
    """Load ``--dataset`` with ``load(sources, exclude) -> (dataset, DataReport)`` (the learner's loader
    with its filters; ``exclude``: the evaluation split whose episodes are left out, or None), print
    what went in, and set the held-out set aside.

    Returns ``(train rows, DataReport of --dataset, held-out rows or None, manifest record or None)``.
    """
    from playpen_tune.data.sources import EVAL_INSTANCES

    exclude, contamination = evaluation_split(config)
    dataset, report = load(config.dataset, exclude)
    excluded = sum(source["dropped"].get(EVAL_INSTANCES, 0) for source in report.sources)
    report.contamination = {**contamination, "excluded": excluded,
                            "summary": f"{excluded} conversation(s) left out ({exclude.describe()})" if exclude
                            else f"not checked: {contamination['reason']}"}
    for line in report.lines():
        print(line)
    dataset, held_out, held_out_record = _held_out_split(config, dataset, report, load)
    return dataset, report, held_out, held_out_record


def evaluation_split(config):
    """The split whose instances training must not see, and the manifest record of the check.

    Returns ``(InstanceSplit or None, {"checked": bool, ...})``. Only episodes of results directories
    name their instance; rows of files and hub datasets cannot be checked. When the default split
    source cannot be read (offline, not cached) a warning says that the check was not made; an
    explicitly given ``--split_source`` that cannot be read is an error.
    """
    from playpen.splits import EVAL_SPLIT, SplitSourceUnreadable, load_split
    from playpen_tune.data import source_kind

    if config.allow_eval_instances:
        return None, {"checked": False, "reason": "--allow_eval_instances"}
    if not any(source_kind(source) == "transcripts" for source in config.dataset):
        return None, {"checked": False, "reason": "no results directory among --dataset (rows of files and hub "
                                                  "datasets name no game instance)"}
    try:
        split = load_split(config.split_source or None, EVAL_SPLIT)
    except SplitSourceUnreadable as error:
        if config.split_source:
            raise PlaypenError(f"{error}; pass a readable --split_source (or a local .jsonl/.json/.csv file)") from None
        print(f"warning: {error}: training episodes were NOT checked against the evaluation split; pass "
              f"--split_source FILE to check them")
        return None, {"checked": False, "reason": f"default split source unreadable: {error}"}
    return split, {"checked": True, "split_source": split.source, "split": split.split}


def _held_out_split(config, dataset, report, load):
    """Choose the held-out set: ``--eval_dataset`` (loaded with ``load``) or ``--eval_fraction`` of
    ``dataset``, or none. The held-out rows are never trained on."""
    if config.eval_dataset:
        held_out, held_out_report = load(config.eval_dataset, None)
        if held_out_report.format != report.format:
            raise PlaypenError(f"--eval_dataset rows are {held_out_report.format}, the --dataset rows "
                               f"{report.format}; give both in one format")
        for line in held_out_report.lines():
            print(f"held-out {line}")
        return dataset, held_out, held_out_report.to_dict()
    if not config.eval_fraction:
        return dataset, None, None
    size = round(len(dataset) * config.eval_fraction)
    if not 0 < size < len(dataset):
        raise PlaypenError(f"--eval_fraction {config.eval_fraction} of {len(dataset)} examples holds out {size}; "
                           f"choose a fraction that holds out at least one and leaves some to train on")
    split = dataset.train_test_split(test_size=size, seed=config.seed)
    print(f"held-out: {size} of the {len(dataset)} examples (--eval_fraction {config.eval_fraction}, --seed {config.seed})")
    return split["train"], split["test"], {"held_out_fraction": config.eval_fraction, "total": size,
                                           "seed": config.seed, "drawn_from": report.fingerprint}


def lora_settings(config) -> dict:
    targets = config.lora_target_modules
    return {"r": config.lora_r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
            "target_modules": "all-linear" if targets == ["all-linear"] else list(targets),
            "use_rslora": config.use_rslora, "task_type": "CAUSAL_LM"}


def load_policy(request: LearnRequest, config, wrap_new_adapter: bool = True):
    """4-bit base prepared for k-bit training, with a new LoRA adapter or the parent's (trainable).

    Returns ``(peft_model, effective_quantization, lora_settings)``. With ``wrap_new_adapter=False``
    and no parent adapter, the prepared base is returned unwrapped: the caller hands
    ``LoraConfig(**lora_settings)`` to the trainer, which adds the adapter itself.
    """
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    set_seed(config.seed)  # the new adapter's initialisation must depend on --seed too

    wanted = quantization_settings(config)
    parent = parent_adapter(request.model)
    if parent is not None:
        check_adapter_files(parent, config.allow_pickle)
        wanted = manifest_io.trained_quantization(parent) or wanted
        print(f"note: continuing the adapter of '{request.model['model_name']}' ({parent}): its LoRA and "
              f"quantization settings are used, --lora_* and --bnb_4bit_* are ignored")
    base, quantization = load_base_model(request.model["huggingface_id"], wanted,
                                         trust_remote_code=trusts_remote_code(request.model, config),
                                         allow_pickle=config.allow_pickle,
                                         attn_implementation=config.attn_implementation, token=hub_token(request.model))
    if quantization["load_in_4bit"]:
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=config.gradient_checkpointing,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    elif config.gradient_checkpointing:  # full precision: no fp32 upcast of every weight
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    if parent is not None:
        model = PeftModel.from_pretrained(base, str(parent), is_trainable=True)
        lora = {k: v for k, v in model.peft_config["default"].to_dict().items()
                if k in ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora")}
        lora["target_modules"] = sorted(lora["target_modules"]) if isinstance(lora["target_modules"], set) else lora["target_modules"]
    else:
        lora = lora_settings(config)
        try:
            model = get_peft_model(base, LoraConfig(**lora)) if wrap_new_adapter else base
        except ValueError as error:  # e.g. --lora_target_modules that match nothing
            raise PlaypenError(f"LoRA cannot be applied: {str(error).splitlines()[0]}; check --lora_target_modules") from None
    return model, quantization, lora


def trainer_arguments(config, output_dir: Path, quantization: dict, held_out: bool = False) -> dict:
    """Keyword arguments shared by ``SFTConfig`` and ``DPOConfig``; ``held_out``: evaluate every eval_steps."""
    import torch

    on_gpu = torch.cuda.is_available()
    dtype = quantization["bnb_4bit_compute_dtype"]
    return dict(
        output_dir=str(output_dir), learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler_type,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs, warmup_steps=config.warmup_steps, max_length=config.max_length,
        optim=config.optim, seed=config.seed, logging_steps=config.logging_steps, logging_first_step=True,
        logging_nan_inf_filter=False, save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, report_to=[] if config.report_to == "none" else [config.report_to],
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=on_gpu and dtype == "bfloat16", fp16=on_gpu and dtype == "float16",
        dataloader_num_workers=0, remove_unused_columns=True,
        eval_strategy="steps" if held_out else "no", eval_steps=config.eval_steps,
        per_device_eval_batch_size=config.per_device_train_batch_size,
    )


def train_sampler(config) -> str:
    """How training batches are drawn: ``length_grouped`` (``--group_by_length``, the default) or ``random``.

    Packed rows (``--packing``) are all about ``--max_length`` long and carry no padding, so they
    are drawn at random.
    """
    return "length_grouped" if config.group_by_length and not getattr(config, "packing", False) else "random"


def with_train_sampler(trainer_class, config, lengths):
    """``trainer_class``, or a subclass of it that draws training batches of similar length.

    ``lengths(dataset)`` gives the padded length of every example of the prepared training
    dataset. The sampler is transformers' ``LengthGroupedSampler``: each epoch a fresh random
    permutation (torch's RNG, which the Trainer seeds with ``--seed``), cut into groups of up to
    50 effective batches (``per_device_train_batch_size x gradient_accumulation_steps``), each
    group sorted by length. Evaluation batches keep the Trainer's sequential order.
    """
    if train_sampler(config) != "length_grouped":
        return trainer_class
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class LengthGroupedTrainer(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            dataset = self.train_dataset if train_dataset is None else train_dataset
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=lengths(dataset))

    LengthGroupedTrainer.__name__ = LengthGroupedTrainer.__qualname__ = f"LengthGrouped{trainer_class.__name__}"
    return LengthGroupedTrainer


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
    if guard.bad_step is None:
        return
    checkpoints = complete_checkpoints(output_dir)
    kept = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved before it"
    raise PlaypenError(f"{guard.reason} at step {guard.bad_step}; {kept}; no adapter was written. "
                       f"Lower --learning_rate or check the data")


@dataclass
class RunRecord:
    """Facts collected during a run, turned into the manifest by :func:`finish_run`."""

    learner: str
    request: LearnRequest
    data: dict
    quantization: dict
    lora: dict
    started: float
    resumed_from: str | None = None
    extra: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # learner-specific additions to the manifest's metrics


@dataclass
class PreparedRun:
    """A trainer ready to train, and what the manifest needs to know about it."""

    trainer: object
    tokenizer: object
    guard: object
    record: RunRecord
    resume_from: Path | None = None


def saved_bytes(run: PreparedRun) -> tuple[int, int]:
    """About what the adapter and what one checkpoint take on disk: the trainable weights, and those
    plus their optimizer state (Adam keeps two fp32 moments per weight; 8-bit optimizers one byte each)."""
    trainable = [p for p in run.trainer.model.parameters() if p.requires_grad]
    adapter = sum(p.numel() * p.element_size() for p in trainable)
    moments = sum(p.numel() for p in trainable) * (2 if "8bit" in run.trainer.args.optim else 8)
    return adapter, adapter + moments


def check_room_for_checkpoints(run: PreparedRun) -> None:
    """Refuse to start when the output filesystem clearly cannot hold the checkpoints and the adapter.

    The estimate is one checkpoint (:func:`saved_bytes`) times the checkpoints on disk at once
    (``save_total_limit`` plus the one being written, at most one per ``save_steps``), plus the adapter.
    """
    args = run.trainer.args
    steps = args.max_steps if args.max_steps > 0 else math.ceil(
        len(run.trainer.get_train_dataloader()) / args.gradient_accumulation_steps * args.num_train_epochs)
    saves = steps // args.save_steps
    if args.save_total_limit:
        saves = min(saves, args.save_total_limit + 1)
    adapter, checkpoint = saved_bytes(run)
    faults.check_free_space(
        run.record.request.output_dir, saves * checkpoint + adapter,
        f"{saves} checkpoint(s) of ~{checkpoint / 2**20:.1f} MiB (save_total_limit "
        f"{args.save_total_limit}, save_steps {args.save_steps}) and the adapter",
        "lower --save_total_limit, raise --save_steps, or choose another --output_dir")


def train_and_finish(run: PreparedRun, before_save=None) -> LearnerResult:
    """Train (resuming if asked), stop on a non-finite loss, then save and write the manifest.

    With a held-out set its loss is measured before training (not on ``--resume``: that would be
    the checkpoint's) and after it, as ``first_eval_loss`` and ``final_eval_loss``.
    ``before_save(run)``, if given, runs after training and before anything is saved.
    """
    run.trainer.add_callback(checkpoint_manifest_callback(run.record))
    held_out = run.trainer.eval_dataset is not None
    if held_out and run.resume_from is None:
        run.record.metrics["first_eval_loss"] = run.trainer.evaluate()["eval_loss"]
    run.trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    raise_if_diverged(run.guard, run.record.request.output_dir)
    if held_out:
        report_held_out_loss(run)
    if before_save is not None:
        before_save(run)
    return finish_run(run.record, run.trainer, run.tokenizer)


def report_held_out_loss(run: PreparedRun) -> None:
    """Record the final and lowest held-out loss (evaluating once more unless the last step was) and print them."""
    evaluated = [entry for entry in run.trainer.state.log_history if "eval_loss" in entry]
    if not evaluated or evaluated[-1]["step"] != run.trainer.state.global_step:
        run.trainer.evaluate()  # logged into log_history at the last step
        evaluated = [entry for entry in run.trainer.state.log_history if "eval_loss" in entry]
    best = min(evaluated, key=lambda entry: entry["eval_loss"])
    metrics = run.record.metrics
    metrics.update(final_eval_loss=evaluated[-1]["eval_loss"], best_eval_loss=best["eval_loss"],
                   best_eval_step=best["step"])
    before = f"{metrics['first_eval_loss']:.4f} before training, " if "first_eval_loss" in metrics else ""
    print(f"held-out loss: {before}{metrics['final_eval_loss']:.4f} at the end (step {evaluated[-1]['step']}), "
          f"lowest {best['eval_loss']:.4f} at step {best['step']}")
    checkpoint = run.record.request.output_dir / f"checkpoint-{best['step']}"
    if best["step"] != evaluated[-1]["step"] and checkpoint.is_dir():
        print(f"  {checkpoint} holds the lowest; to play it: playpen register <name> --base "
              f"{run.record.request.model['model_name']} --adapter {checkpoint}")


def quantized_modules(model) -> dict:
    """Which bitsandbytes layer class the trained model's linear layers are, and how many."""
    counts: dict[str, int] = {}
    for module in model.modules():
        cls = type(module)
        if cls.__module__.startswith("bitsandbytes"):
            name = f"{cls.__module__}.{cls.__qualname__}"
            counts[name] = counts.get(name, 0) + 1
    return counts


def _what_was_trained(record: RunRecord) -> dict:
    """The manifest keys that say how to load what a run trained: learner, base, quantization, LoRA."""
    return {
        "format": 1,
        "learner": {"name": record.learner, "version": manifest_io.library_versions()["playpen-tune"]},
        "name": record.request.name,
        "base_model": without_secrets(record.request.model),
        "quantization": record.quantization,
        "lora": record.lora,
    }


def checkpoint_manifest_callback(record: RunRecord):
    """A TrainerCallback that writes a short manifest into every ``checkpoint-*`` it saves.

    It holds what loading needs (base, quantization, LoRA) plus the step, so that a checkpoint
    (``playpen register NAME --base MODEL --adapter RUN/checkpoint-N``, or ``-m`` of a later learn)
    loads exactly as trained, even if the run never finished.
    """
    from transformers import TrainerCallback

    class CheckpointManifest(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and checkpoint.is_dir():
                manifest_io.write_manifest(checkpoint, {**_what_was_trained(record), "checkpoint": {
                    "step": state.global_step, "run_dir": str(record.request.output_dir.resolve())}})
            return control

    return CheckpointManifest()


def finish_run(record: RunRecord, trainer, tokenizer) -> LearnerResult:
    """Save adapter + tokenizer into the output dir, write the manifest, build the result.

    Under ``accelerate launch`` with several processes only the main process writes files and
    asks for a registry entry; the others return a result with ``register=False``.
    """
    out = record.request.output_dir
    main_process = trainer.accelerator.is_main_process
    try:
        return _save_and_describe(record, trainer, tokenizer, main_process)
    except BaseException:  # a full disk, an interrupt: no adapter is left that a later run could take as complete
        if main_process:
            for name in ADAPTER_FILES:
                (out / name).unlink(missing_ok=True)
        raise


ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", manifest_io.MANIFEST_NAME)


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
        **_what_was_trained(record),
        "config": without_secrets(config_to_dict(request.config)),
        "quantized_modules": quantized_modules(trainer.model),
        "data": record.data,
        "seed": request.config.seed,
        "processes": trainer.args.world_size,  # data-parallel processes (accelerate launch / torchrun)
        "resumed_from": record.resumed_from,
        "metrics": metrics,
        "loss_history": losses,
        "eval_loss_history": [{"step": entry["step"], "eval_loss": entry["eval_loss"]}
                              for entry in trainer.state.log_history if "eval_loss" in entry],
        "versions": manifest_io.library_versions(),
        "command_line": redact_command_line(request.command_line),
        **record.extra,
    }
    if not main_process:
        return LearnerResult(output_dir=out, adapter_dir=out, metrics=metrics, register=False)
    path = manifest_io.write_manifest(out, manifest)
    return LearnerResult(output_dir=out, adapter_dir=out, manifest_path=path, metrics=metrics)
