"""The loop the starter trainers share: each epoch plays the split's instances of one game with clemcore's
runner (into the trainer's episode buffer and epoch-numbered episode records), then calls ``_train``.

A subclass changes the settings after ``super().__init__``: ``game`` (a clemgame name or selector),
``split_source`` (None: upstream's hub dataset ``colab-potsdam/playpen-data``; or a local split file, see
:mod:`playpen.splits`), ``split``, ``num_epochs`` and ``results_dir``. With a teacher the players are
``[teacher, learner]`` (the teacher plays the game's first role), else ``[learner]``.
"""
from __future__ import annotations

import abc
from pathlib import Path

from playpen.base import BasePlaypenTrainer
from playpen.errors import PlaypenError


class EpochPlayPenTrainer(BasePlaypenTrainer):
    """Collect-then-train over epochs; subclasses say how to play (:meth:`_play`) and what to train (:meth:`_train`)."""

    store_branches = False  # one episode record per branch (the branching runner) instead of per instance

    def __init__(self, learner, teacher=None):
        super().__init__(learner, teacher)
        self.game = "taboo"
        self.split_source: str | None = None
        self.split = "train"
        self.num_epochs = 2
        self.results_dir = Path("playpen-records")
        self.episode_buffer = self._new_buffer()
        self.callbacks = None  # built by learn() from the settings above

    @abc.abstractmethod
    def _new_buffer(self):
        """The episode buffer the runner fills."""

    @abc.abstractmethod
    def _buffer_callback(self):
        """The callback that fills ``self.episode_buffer``."""

    @abc.abstractmethod
    def _play(self, game_benchmark, game_instances) -> None:
        """Play ``game_instances`` with clemcore's runner (players :meth:`player_models`, ``self.callbacks``)."""

    def player_models(self) -> list:
        """The models in the game's player order: ``[teacher, learner]``, or ``[learner]`` without teacher."""
        return [self.teacher, self.learner] if self.teacher is not None else [self.learner]

    def learn(self) -> None:
        from clemcore.clemgame import GameBenchmark

        from playpen.splits import load_split

        try:
            spec = self.get_game_registry().get_game_specs_that_unify_with(self.game, verbose=False)[0]
        except ValueError:
            raise PlaypenError(f"no clemgame matches {self.game!r} in the game registry of {Path.cwd()}; set self.game "
                               f"in the trainer's __init__, or point ./game_registry.json at the game") from None
        instances_filter = load_split(self.split_source, self.split, suites=("clem",)).instances_filter()
        self.callbacks = self._callbacks()
        with GameBenchmark.load_from_spec(spec) as game_benchmark:
            for _ in range(self.num_epochs):
                self._collect_episodes(game_benchmark, instances_filter)
                self._train()

    def _callbacks(self):
        from clemcore.backends import Model
        from clemcore.clemgame import (
            ExperimentFileSaver,
            GameBenchmarkCallbackList,
            InstanceFileSaver,
            InteractionsFileSaver,
        )

        from playpen.callbacks.files import EpochResultsFolder, EpochResultsFolderCallback

        folder = EpochResultsFolder(self.results_dir, self.player_models())
        infos = Model.to_infos(self.player_models())
        return GameBenchmarkCallbackList([
            self._buffer_callback(),
            EpochResultsFolderCallback(folder),  # before the savers: it numbers the epoch
            InstanceFileSaver(folder),
            ExperimentFileSaver(folder, player_model_infos=infos),
            InteractionsFileSaver(folder, player_model_infos=infos, store_branches=self.store_branches)])

    def _collect_episodes(self, game_benchmark, instances_filter) -> None:
        from clemcore.clemgame import GameInstances

        self.episode_buffer.reset()
        self._play(game_benchmark, GameInstances.from_game_spec(game_benchmark.game_spec).filter(instances_filter))

    def _train(self) -> None:
        """Train on ``self.episode_buffer`` (override this); the starter only reports what it collected."""
        dataset = self.episode_buffer.to_conversational_dataset(self.learner)
        print(f"collected {len(dataset)} conversation(s) of {self.learner.name}; override _train to train on them")
