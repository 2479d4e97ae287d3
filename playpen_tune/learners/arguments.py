"""TRL trainer arguments every QLoRA learner shares (from its training and policy fields), and the
length-grouped training sampler of the offline learners (from their dataset fields)."""
from __future__ import annotations

from pathlib import Path


def trainer_arguments(config, output_dir: Path, quantization: dict, held_out: bool = False,
                      eval_batch_size: int | None = None) -> dict:
    """Keyword arguments shared by ``SFTConfig``, ``DPOConfig`` and ``GRPOConfig``, from the fields of
    ``TrainingConfig`` and ``PolicyConfig`` (every QLoRA learner has those groups). ``held_out``:
    evaluate every eval_steps, ``eval_batch_size`` examples at a time (default: the training batch size).
    What only some learners have (e.g. ``max_length`` of the dataset group) each learner adds itself."""
    import torch

    on_gpu = torch.cuda.is_available()
    dtype = quantization["bnb_4bit_compute_dtype"]
    return dict(
        output_dir=str(output_dir), learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler_type,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs, warmup_steps=config.warmup_steps,
        optim=config.optim, seed=config.seed, logging_steps=config.logging_steps, logging_first_step=True,
        logging_nan_inf_filter=False, save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, report_to=[] if config.report_to == "none" else [config.report_to],
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=on_gpu and dtype == "bfloat16", fp16=on_gpu and dtype == "float16",
        dataloader_num_workers=0, remove_unused_columns=True,
        eval_strategy="steps" if held_out else "no", eval_steps=config.eval_steps,
        per_device_eval_batch_size=eval_batch_size or config.per_device_train_batch_size,
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
