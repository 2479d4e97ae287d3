"""playpen: train chat models to play clembench games, as plugins on one CLI.

Public API:

* :class:`playpen.learners.Learner`, :class:`LearnRequest`, :class:`LearnerResult`: write a learner.
* :data:`playpen.hookimpl` and :mod:`playpen.hookspecs`: write a plugin.
* :class:`playpen.errors.PlaypenError`: report a user-fixable mistake.
* :class:`playpen.base.BasePlaypenTrainer` (upstream 3.x, ``learn()``) and :class:`playpen.base.BasePlayPen`
  (2.x, ``learn(game_registry)``): upstream's trainer-file APIs (``playpen run``).
* :func:`playpen.splits.to_instances_filter`: rows with game/experiment/task_id as a clemcore instances filter.
"""
from playpen.base import BasePlayPen, BasePlaypenTrainer
from playpen.errors import PlaypenError
from playpen.hookspecs import hookimpl
from playpen.learners import Learner, LearnerResult, LearnRequest
from playpen.splits import to_instances_filter

__all__ = ["BasePlayPen", "BasePlaypenTrainer", "Learner", "LearnerResult", "LearnRequest", "PlaypenError",
           "hookimpl", "to_instances_filter"]
