"""``dpo_qlora``: preference tuning (TRL DPOTrainer) of a LoRA adapter on a 4-bit base.

``-m`` decides the starting point and the reference (:mod:`playpen_tune.learners.policy`): the base
with the adapter disabled for a new adapter, or a frozen copy of the parent adapter when ``-m``
names a tuned model (e.g. an ``sft_qlora`` result), so that at step 0 policy == reference (loss ln 2).
"""
from __future__ import annotations

import copy

from playpen.api import LearnRequest, PlaypenError
from playpen_tune.config import DPOQLoRAConfig
from playpen_tune.learners.base import QLoRALearner, TrainerSetup
from playpen_tune.learners.training_data import TrainingData
from playpen_tune.legacy_config import is_legacy, translate_legacy

# trl.trainer.dpo_trainer.DPOTrainer._compute_loss (TRL 1.x); TRL itself only rejects a wrong name mid-step
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
REWARD_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")
TEXT_WRAPPING = ("prompt -> one user message, chosen/rejected -> one assistant message each, rendered with "
                 "the model's chat template as at inference")


class DPOQLoRALearner(QLoRALearner):
    """DPO on a 4-bit base with LoRA (TRL DPOTrainer); continues an SFT adapter when -m names one."""

    config_class = DPOQLoRAConfig
    trainer_adds_adapter = True  # a new adapter: TRL wraps the base, so the reference is the adapter disabled
    curve_metrics = ("rewards/accuracies", "rewards/margins")

    @classmethod
    def translate_config(cls, raw: dict) -> tuple[dict, list[str]]:
        return translate_legacy(raw, "dpo", "preference_dataset") if is_legacy(raw) else (raw, [])

    def check(self, request: LearnRequest) -> None:
        config: DPOQLoRAConfig = request.config
        if not config.dataset:
            raise PlaypenError("no preference data; pass --dataset FILE|RESULTS_DIR|HUB_ID (repeatable): rows with "
                               "prompt/chosen/rejected, or a clemcore results directory with several models' episodes")
        parse_loss_type(config.loss_type)
        if config.max_prompt_length is not None and not 0 < config.max_prompt_length < config.max_length:
            raise PlaypenError(f"--max_prompt_length must be > 0 and smaller than --max_length ({config.max_length}) "
                               f"so that the completions keep tokens, got {config.max_prompt_length}")

    def data(self, request: LearnRequest, tokenizer) -> TrainingData:
        """Preference pairs as conversations, checked against the chat template."""
        from playpen_tune import chat_masks
        from playpen_tune.data import load_preference_dataset
        from playpen_tune.learners.training_data import load_training_data

        config: DPOQLoRAConfig = request.config

        def load(sources, exclude):
            return load_preference_dataset(sources, split=config.dataset_split, games=config.games or None,
                                           roles=config.roles or None, min_score_gap=config.min_score_gap,
                                           include_static_games=config.include_static_games, exclude=exclude)

        data = load_training_data(config, load)
        data.train, data_format = as_conversations(data.train, data.format, tokenizer, request.model)
        if data.held_out is not None:
            data.held_out, _ = as_conversations(data.held_out, data.format, tokenizer, request.model)
        if tokenizer.chat_template:  # TRL's completion mask is what the answer adds to the rendered prompt
            chat_masks.check_preference_rows(data.train, tokenizer, "--dataset")
            if data.held_out is not None:
                chat_masks.check_preference_rows(data.held_out, tokenizer, "held-out")
        data.facts = {"data_format": data_format}
        return data

    def trainer(self, request, data: TrainingData, tokenizer, policy, callbacks) -> TrainerSetup:
        from trl import DPOConfig

        from playpen_tune.learners.arguments import train_sampler, trainer_arguments
        from playpen_tune.learners.policy import check_reference_adapter

        config: DPOQLoRAConfig = request.config
        loss_types = parse_loss_type(config.loss_type)
        args = DPOConfig(
            **trainer_arguments(config, request.output_dir, policy.quantization, held_out=data.held_out is not None),
            max_length=config.max_length, beta=config.beta, loss_type=loss_types,
            precompute_ref_log_probs=config.precompute_ref_log_probs,
        )
        trainer = make_trainer(model=policy.model, args=args, train_dataset=data.train, eval_dataset=data.held_out,
                               processing_class=tokenizer, peft_config=policy.new_adapter(), callbacks=callbacks,
                               config=config)
        if policy.parent is not None:
            check_reference_adapter(trainer.model)
        kept = len(trainer.train_dataset)
        if kept < len(data.train):
            print(f"warning: {len(data.train) - kept} of {len(data.train)} pairs have prompts of --max_length "
                  f"{config.max_length} tokens or more and are skipped (raise --max_length or set "
                  f"--max_prompt_length)")
        return TrainerSetup(
            trainer=trainer, data={"pairs_trained": kept, "prompts_truncated": trainer.prompts_truncated},
            extra={"reference": policy.reference, "loss_type": loss_types, "beta": config.beta,
                   "train_sampler": train_sampler(config),
                   "prompt_truncation": (f"keep the last {config.max_prompt_length} tokens of the templated prompt"
                                         if config.max_prompt_length else "none (only --max_length, keep_start)"),
                   "dropout": "disabled during DPO (TRL disable_dropout), so policy and reference agree at step 0"})

    def before_save(self, run) -> None:
        record_rewards(run)


def record_rewards(run) -> None:
    """Put the first and last DPO reward statistics, and their history, in the manifest."""
    run.record.metrics.update(reward_metrics(run.trainer.state.log_history))
    run.record.extra["reward_history"] = reward_history(run.trainer.state.log_history)


def parse_loss_type(value: str) -> list[str]:
    """``--loss_type sigmoid`` or a comma list (``sigmoid,sft``: summed with weight 1 each, as TRL does)."""
    names = [name.strip() for name in str(value).split(",") if name.strip()]
    unknown = [name for name in names if name not in LOSS_TYPES]
    if not names or unknown:
        raise PlaypenError(f"--loss_type: unknown {', '.join(unknown) or 'empty value'}; use one or a comma list "
                           f"of {', '.join(LOSS_TYPES)}")
    if "exo_pair" in names:
        raise PlaypenError("--loss_type exo_pair needs TRL's label_smoothing > 0, which dpo_qlora does not expose; "
                           "use another loss type")
    return names


def as_conversations(dataset, data_format: str, tokenizer, model: dict):
    """Wrap string rows into one-message conversations so the chat template applies as at inference.

    Returns the dataset and a description of the format for the manifest. The registry entry's
    ``chat_template_kwargs`` (e.g. ``enable_thinking``) are passed to the template, as clemcore does.
    """
    from playpen_tune.learners.training_data import chat_template_kwargs, with_chat_template_kwargs

    name = model["model_name"]
    if not tokenizer.chat_template:
        if data_format == "preference (text)":
            return dataset, "preference (text), used as plain text: the tokenizer has no chat template"
        raise PlaypenError(f"the tokenizer of '{name}' has no chat template, so the conversational preference "
                           f"data cannot be rendered; use a chat model or add a chat_template to its tokenizer")
    if data_format == "preference (text)":
        dataset = dataset.map(lambda row: {"prompt": [{"role": "user", "content": row["prompt"]}],
                                           "chosen": [{"role": "assistant", "content": row["chosen"]}],
                                           "rejected": [{"role": "assistant", "content": row["rejected"]}]})
        data_format = f"preference (text) wrapped as conversations: {TEXT_WRAPPING}"
    else:
        data_format = f"{data_format}, rendered with the model's chat template as at inference"
    dataset = with_chat_template_kwargs(dataset, model)
    template_kwargs = chat_template_kwargs(model)
    if template_kwargs:
        data_format += f" (chat_template_kwargs {template_kwargs})"
    return dataset, data_format


def pair_lengths(dataset, max_length: int) -> list[int]:
    """The padded length of every prepared pair: prompt + the longer of chosen and rejected, up to ``max_length``.

    TRL's preference collator puts prompt+chosen and prompt+rejected into one batch padded to
    the longest of them, so this is the length that decides a batch's padding.
    """
    return [min(max_length, len(prompt) + max(len(chosen), len(rejected)))
            for prompt, chosen, rejected in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"],
                                                strict=True)]


def make_trainer(*, config: DPOQLoRAConfig, **kwargs):
    """TRL's DPOTrainer with prompt truncation, the training sampler of ``--group_by_length`` and a user
    error when no pair fits ``max_length``.

    TRL 1.x has no ``max_prompt_length`` (it only truncates prompt+completion to ``max_length``,
    keeping the start, and drops pairs whose prompt alone fills it). Here prompts longer than
    ``max_prompt_length`` tokens keep their last tokens (the turns right before the answer, with the
    assistant header), like older TRL's default ``keep_end`` prompt truncation.
    """
    from trl import DPOTrainer

    from playpen_tune.learners.arguments import with_train_sampler

    max_prompt_length = config.max_prompt_length
    sampled = with_train_sampler(DPOTrainer, config, lambda dataset: pair_lengths(dataset, config.max_length))

    class PlaypenDPOTrainer(sampled):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            total = len(dataset)
            if max_prompt_length is None:
                prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            else:
                untruncated = copy.copy(args)
                untruncated.max_length = None  # our truncation keeps every prompt below max_length
                prepared = super()._prepare_dataset(dataset, processing_class, untruncated, dataset_name)
                if dataset_name == "train":  # the held-out set is prepared after it, as "eval"
                    self.prompts_truncated = sum(len(ids) > max_prompt_length for ids in prepared["prompt_ids"])
                prepared = prepared.map(lambda row: {"prompt_ids": row["prompt_ids"][-max_prompt_length:]},
                                        desc=f"Truncating prompts to {max_prompt_length} tokens")
            if len(prepared) == 0:
                which = "" if dataset_name == "train" else "held-out "
                raise PlaypenError(f"all {total} {which}preference pairs have prompts of --max_length "
                                   f"{args.max_length} tokens or more, so no completion token is left to train on; "
                                   f"raise --max_length "
                                   f"or set --max_prompt_length to keep only the end of long prompts")
            return prepared

    PlaypenDPOTrainer.prompts_truncated = 0
    return PlaypenDPOTrainer(**kwargs)


def reward_metrics(log_history: list[dict]) -> dict:
    """First and last logged DPO reward statistics (TRL logs rewards/* with every loss)."""
    logged = [entry for entry in log_history if "rewards/margins" in entry]
    if not logged:
        return {}
    metrics = {}
    for key in REWARD_KEYS:
        short = key.split("/")[1]
        metrics[f"first_reward_{short}"] = logged[0].get(key)
        metrics[f"final_reward_{short}"] = logged[-1].get(key)
    return metrics


def reward_history(log_history: list[dict]) -> list[dict]:
    return [{"step": entry["step"], **{key: entry.get(key) for key in REWARD_KEYS}}
            for entry in log_history if "rewards/margins" in entry]
