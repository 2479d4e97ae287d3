"""Starter: collect episodes with clemcore's batchwise runner (models that generate in batches: local
Hugging Face models, the playpen_qlora backend, the scripted players), then train."""
from __future__ import annotations

from playpen.starters.sequential_trainer import SequentialPlayPenTrainer


class BatchwisePlayPenTrainer(SequentialPlayPenTrainer):
    """Plays ``batch_size`` episodes at once into an :class:`playpen.buffers.EpisodeBuffer`."""

    def __init__(self, learner, teacher=None):
        super().__init__(learner, teacher)
        self.batch_size = 8

    def _play(self, game_benchmark, game_instances) -> None:
        from clemcore.clemgame.runners import batchwise

        batchwise.run(game_benchmark, game_instances, self.player_models(), callbacks=self.callbacks,
                      batch_size=self.batch_size)
