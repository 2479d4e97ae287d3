"""Epoch-numbered results folders (``playpen.callbacks.files`` of upstream playpen 3.x): each benchmark run
(one epoch of a trainer's play) writes its episode files under ``<results>/<run>/epoch_<n>/``.

clemcore 3.7 has both classes; upstream's files pass the player models where clemcore takes the run
folder's name, so :class:`EpochResultsFolder` takes either.
"""
from __future__ import annotations

from pathlib import Path

from clemcore.backends import Model
from clemcore.clemgame import EpochResultsFolder as ClemcoreEpochResultsFolder
from clemcore.clemgame import EpochResultsFolderCallback

__all__ = ["EpochResultsFolder", "EpochResultsFolderCallback"]


class EpochResultsFolder(ClemcoreEpochResultsFolder):
    """clemcore's epoch layout; ``run_dir`` is the run folder's name or the player models (named as
    clemcore names them, ``learner--teacher``)."""

    def __init__(self, result_dir_path: str | Path, run_dir: str | list[Model]):
        super().__init__(Path(result_dir_path), run_dir if isinstance(run_dir, str) else Model.to_identifier(run_dir))

    @property
    def num_epoch(self) -> int:
        """The current epoch (upstream's name of clemcore's ``epoch_id``)."""
        return self.epoch_id
