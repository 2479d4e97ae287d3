"""The built-in learners ``sft_qlora`` and ``dpo_qlora`` (declared as ``playpen.learners`` entry points)."""
