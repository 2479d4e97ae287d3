"""playpen: train chat models to play clembench games, as plugins on one CLI.

A plugin (a learner package, the built-in ``playpen_tune``) imports :mod:`playpen.api`, the plugin API, and no
other module of the host. This package itself keeps the names upstream playpen's trainer files import
(``playpen run``), and, for plugins written before :mod:`playpen.api`, the Learner API, ``hookimpl`` and
``PlaypenError``:

* :class:`playpen.learners.Learner`, :class:`LearnRequest`, :class:`LearnerResult`: write a learner.
* :data:`playpen.hookimpl` and :mod:`playpen.hookspecs`: write a plugin.
* :class:`playpen.errors.PlaypenError`: report a user-fixable mistake.
* :class:`playpen.base.BasePlaypenTrainer` (upstream 3.x, ``learn()``) and :class:`playpen.base.BasePlayPen`
  (2.x, ``learn(game_registry)``): upstream's trainer-file APIs (``playpen run``).
* :func:`playpen.splits.to_instances_filter` (3.x) and :func:`playpen.splits.to_sub_selector` (2.x): rows with
  game/experiment/task_id as clemcore instance selections.
* upstream 3.x's buffers and their callbacks (:mod:`playpen.buffers`, :mod:`playpen.callbacks.buffers`):
  ``EpisodeBuffer``, ``EpisodeBufferCallback``, ``BranchingEpisodeBuffer``, ``BranchingEpisodeBufferCallback``,
  imported on first use (the callbacks import clemcore; ``playpen --help`` stays light).
"""
from playpen.base import BasePlayPen, BasePlaypenTrainer
from playpen.errors import PlaypenError
from playpen.hookspecs import hookimpl
from playpen.learners import Learner, LearnerResult, LearnRequest
from playpen.splits import to_instances_filter, to_sub_selector

_LAZY = {"EpisodeBuffer": "playpen.buffers", "BranchingEpisodeBuffer": "playpen.buffers",
         "EpisodeBufferCallback": "playpen.callbacks.buffers",
         "BranchingEpisodeBufferCallback": "playpen.callbacks.buffers"}

__all__ = ["BasePlayPen", "BasePlaypenTrainer", "BranchingEpisodeBuffer", "BranchingEpisodeBufferCallback",
           "EpisodeBuffer", "EpisodeBufferCallback", "Learner", "LearnerResult", "LearnRequest", "PlaypenError",
           "hookimpl", "to_instances_filter", "to_sub_selector"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'playpen' has no attribute {name!r}")
