"""``dpo_qlora``: preference tuning (TRL DPOTrainer) of a LoRA adapter on a 4-bit base."""
from __future__ import annotations

from playpen.errors import PlaypenError
from playpen.learners import Learner, LearnerResult, LearnRequest
from playpen_tune.config import DPOQLoRAConfig
from playpen_tune.legacy_config import is_legacy, translate_legacy


class DPOQLoRALearner(Learner):
    """DPO on a 4-bit base with LoRA (TRL DPOTrainer); continues an SFT adapter when -m names one."""

    config_class = DPOQLoRAConfig

    @classmethod
    def translate_config(cls, raw: dict) -> tuple[dict, list[str]]:
        return translate_legacy(raw, "dpo", "preference_dataset") if is_legacy(raw) else (raw, [])

    def learn(self, request: LearnRequest) -> LearnerResult:
        raise PlaypenError("dpo_qlora is not implemented yet in this release; use sft_qlora")
