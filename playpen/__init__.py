"""playpen: train chat models to play clembench games, as plugins on one CLI.

Public API:

* :class:`playpen.learners.Learner`, :class:`LearnRequest`, :class:`LearnerResult`: write a learner.
* :data:`playpen.hookimpl` and :mod:`playpen.hookspecs`: write a plugin.
* :class:`playpen.errors.PlaypenError`: report a user-fixable mistake.
* :class:`playpen.base.BasePlayPen`: upstream's trainer-file API (``playpen run``).
"""
from playpen.base import BasePlayPen
from playpen.errors import PlaypenError
from playpen.hookspecs import hookimpl
from playpen.learners import Learner, LearnerResult, LearnRequest

__all__ = ["BasePlayPen", "Learner", "LearnerResult", "LearnRequest", "PlaypenError", "hookimpl"]
