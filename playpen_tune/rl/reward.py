"""Episode rewards read from clemcore's ``scores.json`` (never recomputed from a game's rules).

``--reward`` chooses the episode reward:

* ``success`` (default): 1 for a won episode (``Success``), 0 for a lost one (``Lose``), -1 for an
  aborted one (``Aborted``): the outcome clemcore's game master logged.
* ``main_score``: the game's ``Main Score`` divided by 100 (clemcore's 0-100 convention), i.e.
  in [0, 1] as in the Playpen paper; an aborted episode (Main Score NaN) gets 0.
* a dotted path into scores.json, e.g. ``episode scores.Correct Words``: that number as is.

``--format_reward W`` adds ``W * Request Success Ratio`` (share of the policy's turns the game
could parse, clemcore's per-episode framework metric; 0 for an episode with no request).
"""
from __future__ import annotations

import contextlib
import math

from playpen.api import PlaypenError

EPISODE_SCORES = "episode scores"
OUTCOME_REWARDS = {"Success": 1.0, "Lose": 0.0, "Aborted": -1.0}  # clemcore METRIC_SUCCESS/LOSE/ABORTED
MAIN_SCORE = "Main Score"  # clemcore BENCH_SCORE
REQUEST_SUCCESS_RATIO = "Request Success Ratio"  # clemcore METRIC_REQUEST_SUCCESS_RATIO


def describe(reward: str, format_reward: float) -> str:
    """What ``--reward``/``--format_reward`` mean, for the manifest."""
    what = {"success": "1 success, 0 failure, -1 aborted (scores.json episode scores Success/Lose/Aborted)",
            "main_score": "episode Main Score / 100 (aborted: 0)"}.get(reward, f"scores.json value at '{reward}'")
    if format_reward:
        what += f" + {format_reward} * episode Request Success Ratio"
    return what


def lookup(scores: dict, path: str):
    """The value at a dotted ``path`` of scores.json, or a PlaypenError that names what is there."""
    value = scores
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = ", ".join(sorted(value)) if isinstance(value, dict) else type(value).__name__
            raise PlaypenError(f"--reward {path}: scores.json has no '{part}' (there: {keys}); "
                               f"choose success, main_score or a path that the game's scores.json holds")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlaypenError(f"--reward {path}: the value in scores.json is {value!r}, not a number")
    return float(value)


def episode_reward(scores: dict, reward: str, format_reward: float = 0.0) -> float:
    """The reward of one episode from its clemcore ``scores.json`` contents."""
    episode = scores.get(EPISODE_SCORES, {})
    if reward == "success":
        outcomes = [name for name in OUTCOME_REWARDS if episode.get(name)]
        if len(outcomes) != 1:
            raise PlaypenError(f"--reward success: scores.json logs {outcomes or 'none'} of Success/Lose/Aborted, "
                               f"expected exactly one; use --reward main_score or a dotted path for this game")
        value = OUTCOME_REWARDS[outcomes[0]]
    elif reward == "main_score":
        main = lookup(scores, f"{EPISODE_SCORES}.{MAIN_SCORE}")
        value = 0.0 if math.isnan(main) else main / 100.0
    else:
        value = lookup(scores, reward)
    if format_reward:
        ratio = episode.get(REQUEST_SUCCESS_RATIO, 0.0)
        value += format_reward * (0.0 if ratio is None or math.isnan(ratio) else ratio)
    return value


def check_reward(game_spec, row: dict, reward: str, format_reward: float) -> bool:
    """Compute ``reward`` on one episode of ``row`` played by clemcore's programmatic players (no model loads).

    Raises PlaypenError when the game fails in its own code (while it is imported or sets the episode up)
    or the reward cannot be read from that episode's scores.json. Returns False (nothing checked; the
    first rollout checks it) when the game has no programmatic player.
    """
    import json
    import tempfile
    from pathlib import Path

    from clemcore.backends import CustomResponseModel
    from clemcore.clemgame import GameBenchmark, GameInstances
    from clemcore.clemgame.runners import sequential

    from playpen.api import EpisodeErrors, episode_file_savers, failed_in_setup, one_line
    from playpen_tune.rl.rollout import number_of_players

    name = game_spec["game_name"]
    broken = (f"{name} fails in its own code on the check episode (clemcore's programmatic players, before any "
              f"model loads): {{}}; fix the game (see README, 'Games from clembench') or leave it out of the games")
    players = [CustomResponseModel()] * number_of_players(game_spec)
    with tempfile.TemporaryDirectory() as tmp, EpisodeErrors() as logged, _quiet():
        try:
            with GameBenchmark.load_from_spec(game_spec) as benchmark:
                sequential.run(benchmark, GameInstances(name, [row]), players,
                               callbacks=episode_file_savers(Path(tmp), "programmatic", players))
                benchmark.compute_scores(list(Path(tmp).rglob("interactions.json")))
        except Exception as error:  # the game's module or its scorer raised
            raise PlaypenError(broken.format(one_line(error))) from None
        if any(failed_in_setup(error) for error in logged.errors):
            raise PlaypenError(broken.format(logged.reason()))
        scores = next(Path(tmp).rglob("scores.json"), None)
        if scores is None:
            return False
        episode_reward(json.loads(scores.read_text(encoding="utf-8")), reward, format_reward)
    return True


@contextlib.contextmanager
def _quiet():
    """Keep the check episode's console output (clemcore's progress bars and log lines) off the console:
    what goes wrong in it is reported as one error line."""
    import io
    import logging

    handlers = [handler for name, logger in logging.root.manager.loggerDict.items()
                if name.startswith("clemcore") and isinstance(logger, logging.Logger)
                for handler in logger.handlers
                if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)]
    levels = [handler.level for handler in handlers]
    for handler in handlers:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for handler, level in zip(handlers, levels):
            handler.setLevel(level)
