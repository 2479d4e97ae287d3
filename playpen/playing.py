"""Playing clemgames through clemcore: the models load once, then each game is played, scored and checked.

``clemcore.cli.run`` loads the models on every call, and given several games it reports only
that *some* game failed. :func:`play_games` does what one ``run`` call does (clemcore's
file-saving callbacks and its ``dispatch`` runner, then ``clemcore.cli.score``), with three
differences:

- the models are loaded once for all games (an 8B model is one load per model, not one per game);
- a game that raises does not stop the others, and each game's problem is returned;
- episodes that already have a ``scores.json`` are not played again (resume).

clemcore logs and skips an episode that raises, so success is judged by counting: every
selected episode must end up with a ``scores.json``.

:func:`play_batch` is the one loop that plays episodes, for every command: models passed in already
loaded (any backend or engine), clemcore's runner, clemcore's episode records, the game's own scorer.
``grpo_qlora``'s rollouts play through it too, with per-episode results directories and repeated instances.
"""
from __future__ import annotations

import gc
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from playpen.errors import PlaypenError


def check_generation_settings(temperature: float, max_tokens: int) -> None:
    """-T and -L in the ranges every backend accepts: a finite temperature >= 0, at least one token per turn.

    A model would otherwise fail (or, scripted, silently ignore them) in the middle of the games.
    """
    if not (math.isfinite(temperature) and temperature >= 0):
        raise PlaypenError(f"-T/--temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    if max_tokens < 1:
        raise PlaypenError(f"-L/--max_tokens must be >= 1 (tokens a model may generate per turn), got {max_tokens}")


def episode_key(row: dict) -> tuple[str, int]:
    """(experiment, game_id) of one clemcore instance row."""
    return row["experiment"]["name"], int(row["game_instance"]["game_id"])


def scores_files(results_dir: Path, run_dir: str, game: str) -> dict[tuple[str, int], Path]:
    """``{(experiment, game_id): scores.json}`` of the episodes under ``results_dir/run_dir/game`` clemcore scored.

    clemcore writes ``scores.json`` in place: one cut short (a full disk, an interrupt) does not parse
    and its episode counts as not scored.
    """
    return {(scores.parent.parent.name, int(scores.parent.name.split("_")[-1])): scores
            for scores in (results_dir / run_dir / game).glob("*/instance_*/scores.json")
            if _read_scores(scores) is not None}


def scored_episodes(results_dir: Path, run_dir: str, game: str) -> set[tuple[str, int]]:
    """(experiment, game_id) of the episodes under ``results_dir/run_dir/game`` that clemcore scored."""
    return set(scores_files(results_dir, run_dir, game))


def selected_episodes(game_spec, instances: str | None, experiment: str | None,
                      instances_filter=None) -> set[tuple[str, int]]:
    """The episodes ``instances`` (file name in the game's ``in/``), ``experiment`` and ``instances_filter``
    (a condition on clemcore's instance rows, see :func:`playpen.splits.to_instances_filter`) select,
    filtered in the order ``clemcore.cli.run`` filters them."""
    if instances:
        game_spec.instances = instances  # what clemcore.cli.run does with -i as well
    rows = game_instances(game_spec).filter(
        lambda row: experiment is None or row["experiment"]["name"] == experiment).filter(instances_filter)
    return {episode_key(row) for row in rows}


class InstancesUnreadable(PlaypenError):
    """A game's instances file (``in/<name>.json``) is missing, not JSON, or not clemcore's shape."""


def game_instances(game_spec):
    """clemcore's ``GameInstances`` of the game's instances file (``game_spec.instances``, default ``instances``).

    Raises:
        InstancesUnreadable: naming the file, the files the game has and what to do.
    """
    from clemcore.clemgame import GameInstances

    folder = Path(game_spec["game_path"]) / "in"
    path = folder / f"{getattr(game_spec, 'instances', None) or 'instances'}.json"
    name = game_spec["game_name"]
    if not path.is_file():
        present = sorted(file.stem for file in folder.glob("*.json")) if folder.is_dir() else []
        raise InstancesUnreadable(f"{name}: instances file {path} does not exist (instances files of {name}: "
                                  f"{', '.join(present) or 'none'}); pass one of them with -i, or generate the "
                                  f"instances with the game's instancegenerator.py")
    try:
        return GameInstances.from_game_spec(game_spec)
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise InstancesUnreadable(f"{name}: instances file {path} is not valid JSON ({error}); restore it "
                                  f"from the game's repository or generate it again") from None
    except (KeyError, TypeError, AttributeError) as error:
        raise InstancesUnreadable(f"{name}: instances file {path} is not clemcore's format ({type(error).__name__}: "
                                  f"{error}): it needs {{\"experiments\": [{{\"name\", \"game_instances\": "
                                  f"[{{\"game_id\", ...}}]}}]}}; generate it with the game's "
                                  f"instancegenerator.py") from None


def play_games(model_specs: list, game_specs: list, results_dir: Path, gen_args: dict, *,
               instances: str | None = None, experiment: str | None = None, instances_filter=None,
               batch_size: int = 1, play: bool = True) -> dict[str, str | None]:
    """Play every selected, not yet scored episode of each game with the same loaded models; score them.

    Args:
        model_specs: one clemcore ``ModelSpec`` per player, as ``clemcore.cli.run`` takes them.
        game_specs: clemcore ``GameSpec`` objects, played one after the other.
        results_dir: root of clemcore's results tree; episodes land in
            ``<results_dir>/<player model names joined by '--'>/<game>/<experiment>/instance_<id>/``.
        gen_args: generation arguments for the models (``temperature``, ``max_tokens``).
        instances: instances file name in each game's ``in/`` folder (None: the game's default).
        experiment: play only this experiment's instances.
        instances_filter: play only the instances this clemcore instances filter keeps (None: all).
        batch_size: episodes played at once (models that do not support batching play sequentially).
        play: False scores what is already in ``results_dir`` and reports the rest as missing.

    Returns:
        ``{game name: None}`` for a game whose selected episodes were all played and scored,
        ``{game name: what went wrong}`` otherwise. A model that cannot be loaded fails every game.

    Only one process plays into ``results_dir`` with the same models at a time (a second one is
    refused, naming the first); an interrupt says to resume with ``-r results_dir``.
    """
    from clemcore.backends import Model

    from playpen import faults

    results_dir = Path(results_dir)
    run_dir = Model.to_identifier([spec.model_name for spec in model_specs])  # clemcore's folder: ``a--b``
    with faults.resumable({"-r": results_dir}), faults.exclusive(
            results_dir / f".{run_dir}.lock", f"{results_dir / run_dir}", "pass another -r"):
        return _play_and_score(model_specs, game_specs, results_dir, run_dir, gen_args, instances=instances,
                               experiment=experiment, instances_filter=instances_filter, batch_size=batch_size,
                               play=play)


def _play_and_score(model_specs: list, game_specs: list, results_dir: Path, run_dir: str, gen_args: dict, *,
                    instances: str | None, experiment: str | None, instances_filter, batch_size: int,
                    play: bool) -> dict[str, str | None]:
    wanted = {spec["game_name"]: selected_episodes(spec, instances, experiment, instances_filter)
              for spec in game_specs}
    todo = {name: episodes - scored_episodes(results_dir, run_dir, name) for name, episodes in wanted.items()}
    for name in (name for name, episodes in todo.items() if not episodes):
        print(f"  all selected episodes of {name} were already played; scoring only")
    played = {name: ("gameplay was skipped" if episodes and not play else None, None)
              for name, episodes in todo.items()}
    if play and any(todo.values()):
        played = _play_all(model_specs, game_specs, todo, results_dir, run_dir, gen_args, batch_size)
    return {spec["game_name"]: _score_and_count(spec["game_name"], results_dir, run_dir, wanted[spec["game_name"]],
                                                *played[spec["game_name"]]) for spec in game_specs}


def _play_all(model_specs: list, game_specs: list, todo: dict[str, set], results_dir: Path, run_dir: str,
              gen_args: dict, batch_size: int) -> dict[str, str | None]:
    """Load the models once, play each game's ``todo`` episodes; ``{game: (what it raised, what its episodes
    raised)}`` (see :func:`_play`)."""
    import time

    from playpen import engines
    from playpen.game_errors import one_line
    from playpen.progress import EpisodeProgress

    games = sum(1 for episodes in todo.values() if episodes)
    print(f"loading {run_dir} once for {games} game(s) ...", flush=True)
    started = time.monotonic()
    try:
        player_models = engines.load_models(model_specs, gen_args)  # --engine (playpen.engines)
    except engines.ServerError:  # the vLLM server's problem is the command's, not the games'
        raise
    except Exception as error:  # a model that cannot load fails its games, not the whole command
        problem = f"could not load {run_dir}: {one_line(error)}"
        return {name: (problem if episodes else None, None) for name, episodes in todo.items()}
    print(f"loaded {run_dir} in {time.monotonic() - started:.1f} s; playing "
          f"{sum(len(episodes) for episodes in todo.values())} episode(s) of {games} game(s)", flush=True)
    progress = EpisodeProgress(sum(len(episodes) for episodes in todo.values()), run_dir)
    try:
        return {spec["game_name"]: _play(spec, player_models, todo[spec["game_name"]], batch_size, results_dir,
                                         progress)
                if todo[spec["game_name"]] else (None, None) for spec in game_specs}
    finally:
        progress.close()
        del player_models  # free the weights before the next model loads
        gc.collect()
        _empty_cuda_cache()


def episode_file_savers(results_dir: Path, run_dir: str, player_models: list):
    """The callbacks of ``clemcore.cli.run``: they write the episode files that ``clem score`` reads."""
    from clemcore.backends import Model
    from clemcore.clemgame import (
        ExperimentFileSaver,
        GameBenchmarkCallbackList,
        InstanceFileSaver,
        InteractionsFileSaver,
        ResultsFolder,
        RunFileSaver,
    )
    from clemcore.clemgame.callbacks.files import PlayerFileSaver, SignalFileSaver

    folder = ResultsFolder(results_dir, run_dir=run_dir)
    infos = Model.to_infos(player_models)
    return GameBenchmarkCallbackList([
        InstanceFileSaver(folder), ExperimentFileSaver(folder, player_model_infos=infos),
        InteractionsFileSaver(folder, player_model_infos=infos), RunFileSaver(folder, player_model_infos=infos),
        PlayerFileSaver(folder), SignalFileSaver(folder)])


def _play(game_spec, player_models: list, episodes: set, batch_size: int, results_dir: Path,
          progress) -> tuple[str | None, str | None]:
    """Play ``episodes`` of one game as ``clemcore.cli.run`` would, moving ``progress`` (the phase's bar).

    Returns ``(what it raised, what its episodes raised)``, each one line or None: clemcore logs an
    episode's exception and carries on, so the second is the cause of episodes that are missing later.
    """
    from playpen.game_errors import EpisodeErrors, one_line

    progress.playing(f"{game_spec['game_name']} ({len(episodes)} episode(s))")
    with EpisodeErrors() as logged:
        try:
            rows = list(game_instances(game_spec).filter(lambda row: episode_key(row) in episodes))
            play_batch(game_spec, rows, player_models, [results_dir] * len(rows), batch_size=batch_size,
                       callbacks=[progress], score=False)
        except Exception as error:  # a broken game must not stop the other games
            return logged.reason() or one_line(error), logged.reason()
    return None, logged.reason()


@dataclass
class PlayedEpisode:
    """One episode of :func:`play_batch`: its instance row, where clemcore recorded it, each player's
    conversation as the episode ended and, when scored, its ``scores.json``."""

    row: dict
    directory: Path  # <results_dir>/<players>/<game>/<experiment>/instance_<id>, clemcore's episode folder
    conversations: list = field(default_factory=list)  # per player (game master's order): the messages it
    # saw and gave, as it remembers them; empty when the episode was never set up
    scores: dict | None = None  # scores.json; None: not scored (score=False, or clemcore could not score it)


def play_batch(game_spec, rows: list[dict], player_models: list, results_dirs: list[Path], *, batch_size: int,
               callbacks: list = (), score: bool = True) -> list[PlayedEpisode]:
    """Play one game's ``rows`` (clemcore instance rows) with loaded models: clemcore's runner, its episode
    records, its scorer. Every playpen command that plays episodes plays them here (eval, play, the reward
    check and the rollouts of ``grpo_qlora``); ``play --branching`` plays trees with clemcore's branching
    runner instead (:mod:`playpen.branching_play`: one row gives many episodes, recorded branch by branch).

    Args:
        game_spec: the game's clemcore ``GameSpec``.
        rows: the episodes to play, one instance row each; a row may repeat (a GRPO group plays one
            instance several times) when its repeats are recorded under different ``results_dirs``.
        player_models: loaded clemcore ``Model`` objects, one per player in the game's order (any backend
            or engine; ``clem run -m A B`` order).
        results_dirs: per row, the root of the clemcore results tree its episode is recorded in
            (``<root>/<player model names joined by '--'>/<game>/<experiment>/instance_<id>/``).
        batch_size: episodes played at once; clemcore's batchwise runner when it is above 1 and every
            model generates in batches, else its sequential runner (``clemcore.clemgame.runners.dispatch``).
        callbacks: clemcore callbacks that follow every episode (e.g. a progress bar).
        score: score each played episode with the game's own scorer (``scores.json`` beside it); False
            when the caller scores the whole results tree afterwards (eval and play, which also score resumed runs).

    Returns:
        The episodes in the order of ``rows``. clemcore logs an episode that raises and goes on (its
        ``scores`` stay None); an exception of the runner itself (a model that raises) propagates.
    """
    from clemcore.backends import Model
    from clemcore.clemgame import GameBenchmark, GameInstances
    from clemcore.clemgame.runners import dispatch

    from playpen.clemcore_bridge import install_batch_session_fix, install_logged_progress_bars

    install_batch_session_fix()
    install_logged_progress_bars()
    run_dir = Model.to_identifier(player_models)  # clemcore's folder: ``a--b``
    # one instance object per episode: clemcore hands it to every callback, so it tells the episodes apart
    rows = [{**row, "game_instance": dict(row["game_instance"])} for row in rows]
    roots = [Path(root) for root in results_dirs]
    savers = {root: episode_file_savers(root, run_dir, player_models) for root in dict.fromkeys(roots)}
    episodes = [PlayedEpisode(row, root / run_dir / game_spec["game_name"] / row["experiment"]["name"]
                              / f"instance_{int(row['game_instance']['game_id']):05d}")
                for row, root in zip(rows, roots, strict=True)]
    router = EpisodeCallbacks({id(episode.row["game_instance"]): (episode, savers[root])
                               for episode, root in zip(episodes, roots, strict=True)}, list(callbacks))
    with GameBenchmark.load_from_spec(game_spec) as benchmark:
        dispatch.run(benchmark, GameInstances(game_spec["game_name"], rows), player_models, callbacks=router,
                     batch_size=batch_size)
        if score:
            benchmark.compute_scores([episode.directory / "interactions.json" for episode in episodes
                                      if (episode.directory / "interactions.json").is_file()])
    for episode in episodes if score else ():
        episode.scores = _read_scores(episode.directory / "scores.json")
    return episodes


class EpisodeCallbacks:
    """clemcore callbacks of a batch: each episode's events go to the file savers of its results directory
    and to the ``shared`` callbacks; each episode's players' conversations are kept when it ends.

    It has the methods of clemcore's ``GameBenchmarkCallbackList`` without subclassing it, so that importing
    this module imports no clemcore (``playpen --help`` stays fast)."""

    def __init__(self, episodes: dict, shared: list):
        self.episodes = episodes  # id(game_instance) -> (PlayedEpisode, its file savers)
        self.shared = shared

    def _each(self, game_instance):
        episode, savers = self.episodes[id(game_instance)]
        return episode, [savers, *self.shared]

    def on_benchmark_start(self, game_benchmark):
        for callback in self._all():
            callback.on_benchmark_start(game_benchmark)

    def on_game_start(self, game_master, game_instance):
        for callback in self._each(game_instance)[1]:
            callback.on_game_start(game_master, game_instance)

    def on_branching_point(self, game_master, game_instance, snapshot):
        for callback in self._each(game_instance)[1]:
            callback.on_branching_point(game_master, game_instance, snapshot)

    def on_game_step(self, game_master, game_instance, game_step):
        for callback in self._each(game_instance)[1]:
            callback.on_game_step(game_master, game_instance, game_step)

    def on_game_end(self, game_master, game_instance, exception=None, rewards=None):
        episode, callbacks = self._each(game_instance)
        episode.conversations = [list(player.get_perspective()) for player in game_master.get_players()]
        for callback in callbacks:
            callback.on_game_end(game_master, game_instance, exception, rewards)

    def on_benchmark_end(self, game_benchmark):
        for callback in self._all():
            callback.on_benchmark_end(game_benchmark)

    def _all(self) -> list:
        savers = {id(savers): savers for _, savers in self.episodes.values()}
        return [*savers.values(), *self.shared]


def _read_scores(path: Path) -> dict | None:
    """The contents of a ``scores.json``; None when it is missing or cut short."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _score_and_count(name: str, results_dir: Path, run_dir: str, wanted: set, problem: str | None,
                     cause: str | None = None) -> str | None:
    """Score the game's episodes with clemcore; return what failed, judged by the ``scores.json`` of ``wanted``.

    ``problem``: what playing the game raised; ``cause``: what its episodes raised (the reason of missing ones).
    """
    scoring_problem = score_game(name, results_dir / run_dir)  # always: --skip_gameplay scores what was played
    missing = sorted(wanted - scored_episodes(results_dir, run_dir, name))
    if not missing:
        return problem or scoring_problem
    # why episodes are missing: what playing raised first, then what scoring raised
    reason = problem or cause or scoring_problem or _episode_error(results_dir / run_dir / name, missing[0])
    return (f"{len(missing)} of {len(wanted)} episodes were not played and scored"
            f"{f': {reason}' if reason else ''} (details: clembench.log)")


def score_game(name: str, run_dir: Path) -> str | None:
    """Score the game's episodes under ``run_dir`` with ``clemcore.cli.score``; None, or why it failed: a scorer
    that cannot be loaded, or one that raises on episodes (e.g. episodes of another game version in an upstream
    run; clemcore logs and skips those, and their earlier ``scores.json``, if any, stays)."""
    import clemcore.cli as clem

    from playpen.clemcore_bridge import install_logged_progress_bars
    from playpen.game_errors import EpisodeErrors

    install_logged_progress_bars()
    with EpisodeErrors() as logged:
        try:
            clem.score(name, results_dir=str(run_dir))
        except SystemExit:  # clemcore.cli.score logs the exception, then sys.exit(1)
            return f"clemcore could not score it ({logged.reason() or 'see clembench.log'})"
    return f"clemcore could not score it ({logged.reason()})" if logged.reason() else None


def _episode_error(game_dir: Path, episode: tuple[str, int]) -> str | None:
    """``error: message`` from the episode's ``error.json`` (an exception in the game master), if any."""
    experiment, game_id = episode
    error_file = game_dir / experiment / f"instance_{game_id:05d}" / "error.json"
    if not error_file.is_file():
        return None
    error = json.loads(error_file.read_text(encoding="utf-8"))
    return f"{error.get('error')}: {error.get('message')}"


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()

