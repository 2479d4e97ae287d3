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
"""
from __future__ import annotations

import gc
import json
import math
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
            for scores in (results_dir / run_dir / game).glob("*/instance_*/scores.json") if _complete(scores)}


def _complete(scores: Path) -> bool:
    try:
        json.loads(scores.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return True


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
                                  f"[{{\"game_id\", ...}}]}}]}}; generate it with the game's instancegenerator.py") from None


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
    played = {name: ("gameplay was skipped" if episodes and not play else None, None) for name, episodes in todo.items()}
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
        callbacks = episode_file_savers(results_dir, run_dir, player_models)
        callbacks.append(progress)
        return {spec["game_name"]: _play(spec, player_models, callbacks, todo[spec["game_name"]], batch_size, progress)
                if todo[spec["game_name"]] else (None, None) for spec in game_specs}
    finally:
        progress.close()
        del player_models  # free the weights before the next model loads
        gc.collect()
        _empty_cuda_cache()


def episode_file_savers(results_dir: Path, run_dir: str, player_models: list):
    """The callbacks of ``clemcore.cli.run``: they write the episode files that ``clem score`` reads.

    Public for plugins that play episodes themselves (``grpo_qlora``'s rollouts) and must leave the
    same clemcore episode records as ``playpen play``."""
    from clemcore.backends import Model
    from clemcore.clemgame import (ExperimentFileSaver, GameBenchmarkCallbackList, InstanceFileSaver,
                                   InteractionsFileSaver, ResultsFolder, RunFileSaver)
    from clemcore.clemgame.callbacks.files import PlayerFileSaver, SignalFileSaver

    folder = ResultsFolder(results_dir, run_dir=run_dir)
    infos = Model.to_infos(player_models)
    return GameBenchmarkCallbackList([
        InstanceFileSaver(folder), ExperimentFileSaver(folder, player_model_infos=infos),
        InteractionsFileSaver(folder, player_model_infos=infos), RunFileSaver(folder, player_model_infos=infos),
        PlayerFileSaver(folder), SignalFileSaver(folder)])


def _play(game_spec, player_models: list, callbacks, episodes: set, batch_size: int,
          progress) -> tuple[str | None, str | None]:
    """Play ``episodes`` of one game as ``clemcore.cli.run`` would, moving ``progress`` (the phase's bar).

    Returns ``(what it raised, what its episodes raised)``, each one line or None: clemcore logs an
    episode's exception and carries on, so the second is the cause of episodes that are missing later.
    """
    from clemcore.clemgame import GameBenchmark, GameInstances
    from clemcore.clemgame.runners import dispatch

    from playpen.clemcore_bridge import install_batch_session_fix, install_logged_progress_bars
    from playpen.game_errors import EpisodeErrors, one_line

    install_batch_session_fix()
    install_logged_progress_bars()
    progress.playing(f"{game_spec['game_name']} ({len(episodes)} episode(s))")
    with EpisodeErrors() as logged:
        try:
            with GameBenchmark.load_from_spec(game_spec) as benchmark:
                rows = GameInstances.from_game_spec(game_spec).filter(lambda row: episode_key(row) in episodes)
                dispatch.run(benchmark, rows, player_models, callbacks=callbacks, batch_size=batch_size)
        except Exception as error:  # a broken game must not stop the other games
            return logged.reason() or one_line(error), logged.reason()
    return None, logged.reason()


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
    """Score the game's episodes under ``run_dir`` with ``clemcore.cli.score``; None, or why it failed: a scorer that cannot be
    loaded, or one that raises on episodes (e.g. episodes of another game version in an upstream run; clemcore
    logs and skips those, and their earlier ``scores.json``, if any, stays)."""
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

