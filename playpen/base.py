"""Upstream playpen's trainer APIs, for ``playpen run FILE``: 2.x's ``BasePlayPen`` and 3.x's
``BasePlaypenTrainer``."""
from __future__ import annotations

import abc


class BasePlayPen(abc.ABC):
    """A playpen 2.x trainer file for ``playpen run``: subclass this in the file and implement ``learn``.

    ``learner`` (and the optional ``teacher``) are loaded clemcore ``Model`` objects.
    """

    def __init__(self, learner, teacher=None):
        self.learner = learner
        self.teacher = teacher

    @abc.abstractmethod
    def learn(self, game_registry) -> None:
        """Train ``self.learner``; ``game_registry`` is clemcore's GameRegistry."""


class BasePlaypenTrainer(abc.ABC):
    """A playpen 3.x trainer file for ``playpen run``: subclass this in the file and implement ``learn()``.

    ``learner`` (and the optional ``teacher``) are loaded clemcore ``Model`` objects; the trainer finds
    games itself (:meth:`get_game_registry`) and selects instances with
    :func:`playpen.to_instances_filter`, e.g. the train split of ``colab-potsdam/playpen-data``.
    """

    def __init__(self, learner, teacher=None):
        self.learner = learner
        self.teacher = teacher

    def is_learner(self, player) -> bool:
        """True when the clemcore ``Player`` is played by the learner model."""
        return player.model is self.learner

    def is_teacher(self, player) -> bool:
        """True when the clemcore ``Player`` is played by the teacher model."""
        return self.teacher is not None and player.model is self.teacher

    def get_game_registry(self):
        """clemcore's GameRegistry of the working directory (``./game_registry.json`` and game folders)."""
        from playpen.clemcore_bridge import game_registry

        return game_registry()

    @abc.abstractmethod
    def learn(self) -> None:
        """Train ``self.learner``."""
