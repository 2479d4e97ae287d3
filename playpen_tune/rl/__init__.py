"""Learning in interaction: the live policy plays clemcore games (``grpo_qlora``)."""
