"""``sft_qlora``: supervised fine-tuning of a LoRA adapter on a 4-bit base with TRL's SFTTrainer."""
from __future__ import annotations

import time

from playpen.errors import PlaypenError
from playpen.learners import Learner, LearnerResult, LearnRequest
from playpen_tune.config import SFTQLoRAConfig
from playpen_tune.legacy_config import is_legacy, translate_legacy


class SFTQLoRALearner(Learner):
    """Supervised QLoRA fine-tuning (TRL SFTTrainer, LoRA on a 4-bit NF4 base) from transcripts, files or hub data."""

    config_class = SFTQLoRAConfig

    @classmethod
    def translate_config(cls, raw: dict) -> tuple[dict, list[str]]:
        return translate_legacy(raw, "sft", "sft_dataset") if is_legacy(raw) else (raw, [])

    def learn(self, request: LearnRequest) -> LearnerResult:
        from playpen_tune.learners import common

        with common.removed_if_setup_fails(request.output_dir):
            run = self.prepare(request)
            common.check_room_for_checkpoints(run)
        return common.train_and_finish(run)

    def prepare(self, request: LearnRequest):
        """Everything up to ``trainer.train()``: data, tokenizer, 4-bit model + LoRA, SFTTrainer."""
        from trl import SFTConfig, SFTTrainer

        from playpen_tune import chat_masks
        from playpen_tune.data import load_sft_dataset
        from playpen_tune.learners import common

        started = time.time()
        config: SFTQLoRAConfig = request.config
        if not config.dataset:
            raise PlaypenError("no training data; pass --dataset FILE|RESULTS_DIR|HUB_ID (repeatable)")
        if config.padding_free and not config.packing:
            raise PlaypenError("--padding_free without --packing cannot truncate to --max_length in TRL 1.x; "
                               "pass --packing true as well, or drop --padding_free")
        resume_from = common.check_output_dir(request)

        def load(sources, exclude):
            return load_sft_dataset(sources, split=config.dataset_split, games=config.games or None,
                                    roles=config.roles or None, outcomes=config.outcomes,
                                    include_static_games=config.include_static_games, exclude=exclude)

        dataset, report, held_out, held_out_record = common.load_training_data(config, load)
        conversational = "messages" in dataset.column_names
        if conversational:
            dataset, _ = common.with_chat_template_kwargs(dataset, request.model)
            if held_out is not None:
                held_out, _ = common.with_chat_template_kwargs(held_out, request.model)
        tokenizer = common.load_tokenizer(request.model, config)
        source = None
        if conversational and config.assistant_only_loss:
            source = chat_masks.mask_source(tokenizer)
            print(f"assistant-only loss: masks from {source}")
            if source == chat_masks.PREFIX_RENDERING:  # TRL has no markers to use: hand it the masks
                dataset = chat_masks.tokenize_dataset(dataset, tokenizer, "--dataset")
                if held_out is not None:
                    held_out = chat_masks.tokenize_dataset(held_out, tokenizer, "held-out")
        model, quantization, lora = common.load_policy(request, config)
        args = SFTConfig(
            **common.trainer_arguments(config, request.output_dir, quantization, held_out=held_out is not None),
            packing=config.packing, padding_free=config.padding_free,
            assistant_only_loss=source is not None and source != chat_masks.PREFIX_RENDERING,
            completion_only_loss=(not conversational) and config.completion_only_loss,
        )
        guard = common.loss_guard_callback()
        trainer_class = common.with_train_sampler(SFTTrainer, config,
                                                  lambda prepared: [len(ids) for ids in prepared["input_ids"]])
        trainer = trainer_class(model=model, args=args, train_dataset=dataset, eval_dataset=held_out,
                                processing_class=tokenizer, callbacks=[guard])
        kept = len(trainer.train_dataset)
        if kept == 0:
            raise PlaypenError(f"none of the {len(dataset)} examples keeps a trainable token within "
                               f"--max_length {config.max_length}; raise --max_length")
        if held_out is not None and len(trainer.eval_dataset) == 0:
            raise PlaypenError(f"none of the {len(held_out)} held-out examples keeps a trainable token within "
                               f"--max_length {config.max_length}; raise --max_length or choose other held-out data")
        if kept < len(dataset):
            print(f"warning: {len(dataset) - kept} of {len(dataset)} examples have no trainable token within "
                  f"--max_length {config.max_length} and are skipped")
        common.claim_output_dir(request, "sft_qlora", report.fingerprint, trainer.accelerator)
        record = common.RunRecord(learner="sft_qlora", request=request,
                                  data=dict(report.to_dict(), held_out=held_out_record),
                                  quantization=quantization, lora=lora, started=started,
                                  resumed_from=str(resume_from) if resume_from else None,
                                  extra={"examples_trained": kept, "train_sampler": common.train_sampler(config),
                                         "parent_adapter": str(common.parent_adapter(request.model) or "") or None,
                                         "loss_masking": "assistant_only" if source else
                                         ("completion_only" if args.completion_only_loss else "all_tokens"),
                                         "mask_source": source})
        return common.PreparedRun(trainer=trainer, tokenizer=tokenizer, guard=guard, record=record,
                                  resume_from=resume_from)
