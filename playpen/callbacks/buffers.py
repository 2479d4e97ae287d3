"""The clemcore callbacks that fill upstream playpen's episode buffers (``playpen.callbacks.buffers`` of 3.x).

Pass them in the ``callbacks`` of clemcore's ``sequential``, ``batchwise`` or ``branching`` runner.
"""
from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy

from clemcore.clemgame import GameBenchmarkCallback

from playpen.buffers import BranchingEpisodeBuffer, EpisodeBuffer


class EpisodeBufferCallback(GameBenchmarkCallback):
    """Puts every step of every game into an :class:`EpisodeBuffer`, one episode per game; games the batchwise
    runner plays side by side keep their own episodes."""

    def __init__(self, episode_buffer: EpisodeBuffer):
        self.episode_buffer = episode_buffer
        self._episode_of: dict[int, int] = {}  # id(game master) -> its episode in the buffer

    def on_game_start(self, game_master, game_instance):
        self._episode_of[id(game_master)] = self.episode_buffer.next_episode()

    def on_game_step(self, game_master, game_instance, game_step):
        self.episode_buffer.add_step(game_step, self._episode_of[id(game_master)])


def average_rewards(rewards: dict | None) -> float:
    """The episode score of a branch: the mean of the players' final rewards (clemcore's default reward:
    1 success, 0 failure, -1 aborted)."""
    if not rewards:
        return 0.0
    return sum(rewards.values()) / len(rewards)


class BranchingEpisodeBufferCallback(GameBenchmarkCallback):
    """Fills a :class:`BranchingEpisodeBuffer` during clemcore's branching runner.

    The runner deep-copies every game (with its callbacks) into each branch: a copy of this callback follows
    one branch, recording its steps and the branching points it passes (which branch it is of each); the
    buffer is shared. When the branch's episode ends, its steps, score (``score_func`` of clemcore's final
    rewards) and branching points go to the buffer; an episode ended by an exception adds nothing.
    """

    def __init__(self, episode_buffer: BranchingEpisodeBuffer,
                 score_func: Callable[[dict | None], float] = average_rewards):
        self.episode_buffer = episode_buffer
        self.score_func = score_func
        self._trajectory: list = []
        self._markers: list[tuple] = []  # (game snapshot, branch index, index of the diverging step)

    def __deepcopy__(self, memo):
        copy = BranchingEpisodeBufferCallback(self.episode_buffer, self.score_func)
        copy._trajectory = deepcopy(self._trajectory, memo)
        copy._markers = list(self._markers)  # snapshots identify points: shared, never copied
        return copy

    def on_game_start(self, game_master, game_instance):
        self._trajectory, self._markers = [], []

    def on_branching_point(self, game_master, game_instance, snapshot):
        self._markers.append((snapshot, self.episode_buffer.next_branch(snapshot), len(self._trajectory)))

    def on_game_step(self, game_master, game_instance, game_step):
        self._trajectory.append(game_step)

    def on_game_end(self, game_master, game_instance, exception=None, rewards=None):
        if exception is None:
            self.episode_buffer.add_episode(self._trajectory, self.score_func(rewards), self._markers)
        self._trajectory, self._markers = [], []
