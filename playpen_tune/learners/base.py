"""The one shape of a QLoRA learner: check, input, policy, trainer, claim the output directory, train,
finish. :meth:`QLoRALearner.learn` is written once here; a learner module writes what is different
(its checks, its input, its TRL trainer, what it records before saving).

A learner's input is either :class:`TrainingData` (rows of a dataset: ``sft_qlora``, ``dpo_qlora``)
or a :class:`GameEnvironment` (games to play: ``grpo_qlora``); ``data()`` returns it and ``trainer()``
receives it, so nothing is passed through attributes of the learner."""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import ClassVar

from playpen.api import Learner, LearnerResult, LearnRequest
from playpen_tune.learners.callbacks import (
    checkpoint_manifest_callback,
    loss_guard_callback,
    raise_if_diverged,
    replace_progress_callback,
)
from playpen_tune.learners.game_environment import GameEnvironment
from playpen_tune.learners.output_dir import (
    check_output_dir,
    check_room_for_checkpoints,
    claim_output_dir,
    removed_if_setup_fails,
)
from playpen_tune.learners.policy import Policy, drop_reference_adapter, load_policy, load_tokenizer
from playpen_tune.learners.run_record import RunRecord, finish_run, report_held_out_loss
from playpen_tune.learners.training_data import TrainingData
from playpen_tune.registration import check_loadable_entry

# what a learner learns from; both carry ``fingerprint``, ``record`` (the manifest's data section) and ``facts``
LearnerInput = TrainingData | GameEnvironment


@dataclass
class TrainerSetup:
    """What :meth:`QLoRALearner.trainer` builds: the TRL trainer and the manifest facts only it knows.

    Attributes:
        trainer: a ``transformers.Trainer`` (TRL trainer) ready to train.
        data: additions to the manifest's ``data`` section (e.g. how many rows survived tokenization).
        extra: learner-specific top-level manifest keys.
    """

    trainer: object
    data: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class PreparedRun:
    """A trainer ready to train, and what the manifest needs to know about it."""

    trainer: object
    tokenizer: object
    guard: object
    record: RunRecord


class QLoRALearner(Learner):
    """Base class of the LoRA-on-a-4-bit-base learners (``sft_qlora``, ``dpo_qlora``, ``grpo_qlora``).

    Subclasses set ``config_class`` (composed of the groups of :mod:`playpen_tune.config`: dataset or
    games, policy and training, and the learner's own fields) and implement :meth:`data` and
    :meth:`trainer`; :meth:`check` and :meth:`before_save` are optional. The learner's name is the
    one it was invoked by (``request.learner``).
    """

    # True: the TRL trainer adds a new LoRA adapter itself from peft_config (DPO, GRPO)
    trainer_adds_adapter: ClassVar[bool] = False
    # False for learners whose dataloader does not tell the number of steps before training (GRPO)
    estimates_checkpoint_room: ClassVar[bool] = True
    # metrics the TRL trainer logs that training_curves.png plots next to the loss, one panel each
    curve_metrics: ClassVar[tuple[str, ...]] = ()

    def check(self, request: LearnRequest) -> None:
        """Refuse settings that cannot work before anything is read (raise ``PlaypenError``)."""

    @abc.abstractmethod
    def data(self, request: LearnRequest, tokenizer) -> LearnerInput:
        """Load and check what the learner learns from, before any model loads (the tokenizer of ``-m`` is
        loaded already): :class:`TrainingData` or a :class:`GameEnvironment`."""

    @abc.abstractmethod
    def trainer(self, request: LearnRequest, data: LearnerInput, tokenizer, policy: Policy,
                callbacks: list) -> TrainerSetup:
        """Build the TRL trainer on ``policy`` with ``callbacks`` from what :meth:`data` returned; the one part
        each learner writes."""

    def before_save(self, run: PreparedRun) -> None:
        """Runs after training and before anything is saved (e.g. record logged metrics in the manifest)."""

    def learn(self, request: LearnRequest) -> LearnerResult:
        """Prepare (removing the output dir again if that fails), train, save and describe the run."""
        with removed_if_setup_fails(request.output_dir):
            run = self.prepare(request)
            if self.estimates_checkpoint_room:
                check_room_for_checkpoints(run.trainer, request.output_dir)
        return self.train_and_finish(run)

    def prepare(self, request: LearnRequest) -> PreparedRun:
        """Everything up to ``trainer.train()``: checks, data, tokenizer, 4-bit policy + LoRA, trainer, claim."""
        started = time.time()
        check_loadable_entry(request.model, "playpen learn -m")
        self.check(request)
        resume_from = check_output_dir(request)
        tokenizer = load_tokenizer(request.model, request.config)
        data = self.data(request, tokenizer)
        print(f"loading {request.model['model_name']} ({request.model['huggingface_id']}) for training ...", flush=True)
        policy = load_policy(request, request.config, wrap_new_adapter=not self.trainer_adds_adapter)
        guard = loss_guard_callback()
        setup = self.trainer(request, data, tokenizer, policy, [guard])
        claim_output_dir(request, data.fingerprint, setup.trainer.accelerator)
        record = RunRecord(request=request, data={**data.record, **setup.data}, quantization=policy.quantization,
                           lora=policy.lora, started=started, resume_from=resume_from,
                           extra={"parent_adapter": str(policy.parent) if policy.parent else None,
                                  **data.facts, **setup.extra})
        return PreparedRun(trainer=setup.trainer, tokenizer=tokenizer, guard=guard, record=record)

    def train_and_finish(self, run: PreparedRun) -> LearnerResult:
        """Train (resuming if asked), stop on a non-finite loss, then save and write the manifest.

        With a held-out set its loss is measured before training (not on ``--resume``: that would be
        the checkpoint's) and after it, as ``first_eval_loss`` and ``final_eval_loss``. TRL's frozen
        reference adapter, if the trainer made one, is dropped before saving: the adapter saved is the
        policy alone.
        """
        record, trainer = run.record, run.trainer
        trainer.add_callback(checkpoint_manifest_callback(record.what_was_trained(), record.request.output_dir))
        replace_progress_callback(trainer)
        held_out = trainer.eval_dataset is not None
        if held_out and record.resume_from is None:
            record.metrics["first_eval_loss"] = trainer.evaluate()["eval_loss"]
        trainer.train(resume_from_checkpoint=str(record.resume_from) if record.resume_from else None)
        raise_if_diverged(run.guard, record.request.output_dir)
        if held_out:
            report_held_out_loss(record, trainer)
        from playpen_tune.learners.curves import logged_series

        for metric in self.curve_metrics:
            record.curves[metric] = {"train": logged_series(trainer.state.log_history, metric),
                                     "held-out": logged_series(trainer.state.log_history, f"eval_{metric}")}
        drop_reference_adapter(trainer.model)
        self.before_save(run)
        return finish_run(record, trainer, run.tokenizer)
