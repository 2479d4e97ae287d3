"""Starter: collect branching episodes with clemcore's branching runner (the learner's turns are played
``branching_factor`` times each, so one instance gives a tree of episodes), then train, e.g. with DPO on
``self.episode_buffer.to_preference_dataset(...)``."""
from __future__ import annotations

from playpen.starters.epochs import EpochPlayPenTrainer


class BranchingPlayPenTrainer(EpochPlayPenTrainer):
    """Plays into a :class:`playpen.buffers.BranchingEpisodeBuffer`; one episode record per branch.

    ``branching_condition`` (clemcore's, called with ``player=`` and ``env=``) says where to branch: by default
    on the learner's turns. Upstream's examples set it as ``branching_criteria``; that name is read too.
    """

    store_branches = True

    def __init__(self, learner, teacher=None):
        super().__init__(learner, teacher)
        from clemcore.clemgame.runners import branching

        self.results_dir = self.results_dir.with_name("playpen-records-branching")
        self.branching_factor = 2
        self.branching_condition = branching.is_player_model(self.learner)

    def _new_buffer(self):
        from playpen.buffers import BranchingEpisodeBuffer

        return BranchingEpisodeBuffer()

    def _buffer_callback(self):
        from playpen.callbacks.buffers import BranchingEpisodeBufferCallback

        return BranchingEpisodeBufferCallback(self.episode_buffer)

    def _play(self, game_benchmark, game_instances) -> None:
        from clemcore.clemgame.runners import branching

        branching.run(game_benchmark, game_instances, self.player_models(), callbacks=self.callbacks,
                      branching_factor=self.branching_factor,
                      branching_condition=getattr(self, "branching_criteria", self.branching_condition))
