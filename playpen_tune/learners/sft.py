"""``sft_qlora``: supervised fine-tuning of a LoRA adapter on a 4-bit base with TRL's SFTTrainer."""
from __future__ import annotations

from playpen.api import LearnRequest, PlaypenError
from playpen_tune.config import SFTQLoRAConfig
from playpen_tune.learners.base import QLoRALearner, TrainerSetup
from playpen_tune.learners.training_data import TrainingData
from playpen_tune.legacy_config import is_legacy, translate_legacy


class SFTQLoRALearner(QLoRALearner):
    """Supervised QLoRA fine-tuning (TRL SFTTrainer, LoRA on a 4-bit NF4 base) from transcripts, files or hub data."""

    curve_metrics = ("mean_token_accuracy",)
    config_class = SFTQLoRAConfig

    @classmethod
    def translate_config(cls, raw: dict) -> tuple[dict, list[str]]:
        return translate_legacy(raw, "sft", "sft_dataset") if is_legacy(raw) else (raw, [])

    def check(self, request: LearnRequest) -> None:
        config: SFTQLoRAConfig = request.config
        if not config.dataset:
            raise PlaypenError("no training data; pass --dataset FILE|RESULTS_DIR|HUB_ID (repeatable)")
        if config.padding_free and not config.packing:
            raise PlaypenError("--padding_free without --packing cannot truncate to --max_length in TRL 1.x; "
                               "pass --packing true as well, or drop --padding_free")

    def data(self, request: LearnRequest, tokenizer) -> TrainingData:
        """Conversations or text rows; with ``--assistant_only_loss`` the masks' source is chosen here."""
        from playpen_tune import chat_masks
        from playpen_tune.data import load_sft_dataset
        from playpen_tune.learners.training_data import load_training_data, with_chat_template_kwargs

        config: SFTQLoRAConfig = request.config

        def load(sources, exclude):
            return load_sft_dataset(sources, split=config.dataset_split, games=config.games or None,
                                    roles=config.roles or None, outcomes=config.outcomes,
                                    include_static_games=config.include_static_games, exclude=exclude)

        data = load_training_data(config, load)
        conversational = "messages" in data.train.column_names
        source = None
        if conversational:
            data.map(lambda rows, _: with_chat_template_kwargs(rows, request.model))
            if config.assistant_only_loss:
                source = chat_masks.mask_source(tokenizer)
                print(f"assistant-only loss: masks from {source}")
                if source == chat_masks.PREFIX_RENDERING:  # TRL has no markers to use: hand it the masks
                    data.map(lambda rows, which: chat_masks.tokenize_dataset(rows, tokenizer, which))
        completion_only = not conversational and config.completion_only_loss
        data.facts = {"loss_masking": "assistant_only" if source else
                      ("completion_only" if completion_only else "all_tokens"), "mask_source": source}
        return data

    def trainer(self, request, data: TrainingData, tokenizer, policy, callbacks) -> TrainerSetup:
        from trl import SFTConfig, SFTTrainer

        from playpen_tune import chat_masks
        from playpen_tune.learners.arguments import train_sampler, trainer_arguments, with_train_sampler

        config: SFTQLoRAConfig = request.config
        source = data.facts["mask_source"]
        args = SFTConfig(
            **trainer_arguments(config, request.output_dir, policy.quantization, held_out=data.held_out is not None),
            max_length=config.max_length, packing=config.packing, padding_free=config.padding_free,
            assistant_only_loss=source is not None and source != chat_masks.PREFIX_RENDERING,
            completion_only_loss=data.facts["loss_masking"] == "completion_only",
        )
        trainer_class = with_train_sampler(SFTTrainer, config,
                                           lambda prepared: [len(ids) for ids in prepared["input_ids"]])
        trainer = trainer_class(model=policy.model, args=args, train_dataset=data.train, eval_dataset=data.held_out,
                                processing_class=tokenizer, callbacks=callbacks)
        kept, total = len(trainer.train_dataset), len(data.train)
        if kept == 0:
            raise PlaypenError(f"none of the {total} examples keeps a trainable token within "
                               f"--max_length {config.max_length}; raise --max_length")
        if data.held_out is not None and len(trainer.eval_dataset) == 0:
            raise PlaypenError(f"none of the {len(data.held_out)} held-out examples keeps a trainable token within "
                               f"--max_length {config.max_length}; raise --max_length or choose other held-out data")
        if kept < total:
            print(f"warning: {total - kept} of {total} examples have no trainable token within "
                  f"--max_length {config.max_length} and are skipped")
        return TrainerSetup(trainer=trainer, extra={"examples_trained": kept, "train_sampler": train_sampler(config)})
