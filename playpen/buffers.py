"""Upstream playpen's episode buffers (``playpen.buffers`` of playpen 3.x), so that upstream trainer files run here.

A buffer is filled during one of clemcore's runners by its callback (:mod:`playpen.callbacks.buffers`) and turns
what was played into TRL datasets seen from one side: the perspective player's answers are ``assistant``
messages and what the game master sent it (the other player's moves as the game relays them) ``user``
messages. A perspective is a player name (``"Player 2"``, as upstream's newer examples pass) or a clemcore
``Model`` (as its older ones pass): every player that model played, one conversation each.

- :class:`EpisodeBuffer`: every step (context, response, done, info) of every episode, for SFT.
- :class:`BranchingEpisodeBuffer`: filled during clemcore's branching runner; for each branching point the
  sub-trajectory up to the diverging response and the final episode score of every branch through it. The
  branches of one point with different scores give a DPO pair (prompt: the shared context; chosen and
  rejected: the diverging responses of the best and the worst branch).

``datasets`` is imported when a dataset is built, not here.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from statistics import fmean
from threading import Lock
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from clemcore.backends import Model
    from clemcore.clemgame import GameSnapshot, GameStep
    from datasets import Dataset

Perspective = Union[str, "Model"]


def plays(step: GameStep, perspective: Perspective) -> bool:
    """True when ``step`` was played from ``perspective``: by the player of that name, or by that model."""
    if isinstance(perspective, str):
        return step.player_name == perspective
    return step.model_name == perspective.name


def step_messages(step: GameStep) -> list[dict]:
    """The game master's message to the player (text only) and the player's answer."""
    return [{"role": "user", "content": step.context["content"]}, {"role": "assistant", "content": step.response}]


def conversations(trajectory: list[GameStep], perspective: Perspective) -> list[list[dict]]:
    """One conversation per player of the trajectory played from ``perspective``, in order of first move."""
    by_player: dict[str, list[dict]] = {}
    for step in trajectory:
        if plays(step, perspective):
            by_player.setdefault(step.player_name, []).extend(step_messages(step))
    return list(by_player.values())


def _dataset(rows: list[dict]) -> Dataset:
    from datasets import Dataset

    return Dataset.from_list(rows)


class EpisodeBuffer:
    """The steps of the episodes of a session of game play, episode by episode (``clemcore`` ``GameStep``s:
    context, response, done, info, player_name, model_name)."""

    def __init__(self):
        self.episodes: list[list[Any]] = [[]]
        self.current_episode = 0

    def next_episode(self) -> int:
        """Start a new episode and return its index. Each game gets its own, even when the batchwise runner
        starts all games before the first step; empty episodes are left out when iterating."""
        self.episodes.append([])
        self.current_episode = len(self.episodes) - 1
        return self.current_episode

    def add_step(self, game_step: GameStep, episode: int | None = None) -> None:
        """Append a step to ``episode`` (default: the current one)."""
        self.episodes[self.current_episode if episode is None else episode].append(game_step)

    def reset(self) -> None:
        """Forget every episode (e.g. before the next epoch of play)."""
        self.episodes = [[]]
        self.current_episode = 0

    def __iter__(self):
        return (episode for episode in self.episodes if episode)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_conversational_dataset(self, perspective: Perspective) -> Dataset:
        """TRL's conversational format: ``{"messages": [...]}`` per episode and player of ``perspective``."""
        return _dataset([{"messages": messages} for episode in self
                         for messages in conversations(episode, perspective)])


@dataclass
class BranchingPoint:
    """One branch through a branching point: the trajectory up to and including its diverging step, and the
    final score of the episode it ended in. Branches of the same point share ``game_snapshot``."""

    game_snapshot: GameSnapshot
    branch: int  # which of the point's branches (0 .. branching factor - 1)
    trajectory: list  # of GameStep; the last one is the diverging response
    episode_score: float

    @property
    def prompt(self) -> list:
        """The steps before the divergence, the same for every branch of the point."""
        return self.trajectory[:-1]

    @property
    def diverging_step(self) -> GameStep:
        """The step in which the branches differ."""
        return self.trajectory[-1]


class BranchingEpisodeBuffer:
    """The branching points and finished branches of a session of branching play (clemcore's branching runner).

    One instance is shared by all branches (deep copies return it), and written under a lock. A finished
    branch adds one :class:`BranchingPoint` per branching point it passed. Several finished episodes can
    share a branch of a point (it branched again later); the branch then counts with the mean of their
    scores.
    """

    def __init__(self):
        self._lock = Lock()
        self.reset()

    def __deepcopy__(self, memo):
        return self  # every branch writes to the same buffer

    def reset(self) -> None:
        """Forget everything collected."""
        self.branching_points: list[BranchingPoint] = []
        self.trajectories: list[tuple[list, float]] = []  # (finished episode's steps, its score)
        self._branches_started: dict = defaultdict(int)

    def next_branch(self, game_snapshot: GameSnapshot) -> int:
        """The index of the next branch created at the point of ``game_snapshot``."""
        with self._lock:
            index = self._branches_started[game_snapshot.origin]
            self._branches_started[game_snapshot.origin] += 1
            return index

    def add_episode(self, trajectory: list, episode_score: float, markers: list[tuple]) -> None:
        """Add a finished branch: its steps, its score and ``(game_snapshot, branch, step index)`` of every
        branching point it passed (the step at that index is its diverging response)."""
        with self._lock:
            self.trajectories.append((trajectory, episode_score))
            for snapshot, branch, turn in markers:
                self.branching_points.append(BranchingPoint(snapshot, branch, trajectory[:turn + 1], episode_score))

    def to_conversational_dataset(self, perspective: Perspective) -> Dataset:
        """Every finished branch as whole conversations of ``perspective`` (TRL's conversational format)."""
        return _dataset([{"messages": messages} for trajectory, _ in self.trajectories
                         for messages in conversations(trajectory, perspective)])

    def to_preference_dataset(self, perspective: Perspective, data_format: str = "conversational",
                              require_different_scores: bool = True) -> Dataset:
        """DPO pairs, one per branching point where ``perspective`` answered: prompt = that player's
        conversation up to the game master's message it answered differently in each branch, chosen /
        rejected = the answer of the branch with the highest / lowest score. Points whose best and worst
        branch scored the same (or answered the same) give no pair unless ``require_different_scores`` is
        False.
        """
        if data_format != "conversational":
            raise ValueError(f"data_format {data_format!r}: only 'conversational' preference rows are built")
        pairs = []
        for branches in self._branches_by_point().values():
            if len(branches) < 2:
                continue
            ranked = sorted(branches.values(), key=lambda branch: branch[1], reverse=True)
            (best, best_score), (worst, worst_score) = ranked[0], ranked[-1]
            chosen, rejected = best.diverging_step, worst.diverging_step
            if not plays(chosen, perspective):
                continue
            if require_different_scores and (math.isclose(best_score, worst_score, abs_tol=1e-9)
                                             or chosen.response == rejected.response):
                continue
            earlier = [step for step in best.prompt if step.player_name == chosen.player_name]
            pairs.append({
                "prompt": [m for step in earlier for m in step_messages(step)] + step_messages(chosen)[:1],
                "chosen": [{"role": "assistant", "content": chosen.response}],
                "rejected": [{"role": "assistant", "content": rejected.response}],
            })
        return _dataset(pairs)

    def _branches_by_point(self) -> dict:
        """``{point: {branch: (a BranchingPoint of it, mean score of the episodes through it)}}``."""
        grouped: dict = defaultdict(lambda: defaultdict(list))
        for point in self.branching_points:
            grouped[point.game_snapshot.origin][point.branch].append(point)
        return {origin: {branch: (points[0], fmean(p.episode_score for p in points))
                         for branch, points in branches.items()}
                for origin, branches in grouped.items()}
