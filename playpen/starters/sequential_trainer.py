"""Starter: collect episodes with clemcore's sequential runner (every model works), then train."""
from __future__ import annotations

from playpen.starters.epochs import EpochPlayPenTrainer


class SequentialPlayPenTrainer(EpochPlayPenTrainer):
    """Plays the instances one after the other into an :class:`playpen.buffers.EpisodeBuffer`."""

    def _new_buffer(self):
        from playpen.buffers import EpisodeBuffer

        return EpisodeBuffer()

    def _buffer_callback(self):
        from playpen.callbacks.buffers import EpisodeBufferCallback

        return EpisodeBufferCallback(self.episode_buffer)

    def _play(self, game_benchmark, game_instances) -> None:
        from clemcore.clemgame.runners import sequential

        sequential.run(game_benchmark, game_instances, self.player_models(), callbacks=self.callbacks)


# upstream's sequential starter names its class so (a copy of its batchwise starter's name)
BatchwisePlayPenTrainer = SequentialPlayPenTrainer
