"""Upstream playpen's trainer API, kept for ``playpen run FILE`` compatibility."""
from __future__ import annotations

import abc


class BasePlayPen(abc.ABC):
    """A trainer file for ``playpen run``: subclass this in the file and implement ``learn``.

    ``learner`` (and the optional ``teacher``) are loaded clemcore ``Model`` objects.
    """

    def __init__(self, learner, teacher=None):
        self.learner = learner
        self.teacher = teacher

    @abc.abstractmethod
    def learn(self, game_registry) -> None:
        """Train ``self.learner``; ``game_registry`` is clemcore's GameRegistry."""
