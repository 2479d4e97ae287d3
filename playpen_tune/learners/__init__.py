"""The built-in learners ``sft_qlora``, ``dpo_qlora`` and ``grpo_qlora`` (``playpen.learners`` entry points), all
``QLoRALearner`` subclasses (:mod:`playpen_tune.learners.base`)."""
