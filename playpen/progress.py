"""One progress bar of ours per phase of gameplay, and an outcome line per game.

clemcore draws several nested tqdm bars per game (setup, responses, a ``Batch sizes: ...`` line,
scoring) that fight on a terminal and fill a redirected log with cursor escapes; they go to the log
file instead (:func:`playpen.clemcore_bridge.install_logged_progress_bars`). What a researcher watches
is one bar per phase: the episodes done of all the phase's games, episodes/s and the ETA, driven by
clemcore's own ``on_game_end`` callback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from clemcore.clemgame import GameBenchmarkCallback
from tqdm import tqdm


class EpisodeProgress(GameBenchmarkCallback):
    """A clemcore callback that moves one bar by one episode at every ``on_game_end``."""

    def __init__(self, total: int, description: str):
        interactive = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=description, unit="episode", position=0, dynamic_ncols=True,
                        file=sys.stderr, mininterval=0.2 if interactive else 30)

    def playing(self, game: str) -> None:
        """Name the game being played next to the bar."""
        self.bar.set_postfix_str(game)

    def on_game_end(self, game_master, game_instance, exception=None, rewards=None):
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


OUTCOMES = ("Success", "Lose", "Aborted")


def episode_outcomes(scores_files) -> dict[str, int]:
    """``{"played", "success", "lost", "aborted"}`` counts from clemcore's ``scores.json`` files (its
    ``episode scores``: Success, Lose, Aborted; played = not aborted)."""
    counts = {"played": 0, "success": 0, "lost": 0, "aborted": 0}
    for path in scores_files:
        episode = json.loads(Path(path).read_text(encoding="utf-8")).get("episode scores", {})
        success, lost, aborted = (bool(episode.get(name)) for name in OUTCOMES)
        counts["aborted"] += aborted
        counts["played"] += not aborted
        counts["success"] += success
        counts["lost"] += lost
    return counts


def outcome_line(game: str, counts: dict[str, int]) -> str:
    """``  game  N episodes: P played (S success, L lost), A aborted`` as eval's summary lines are laid out."""
    total = counts["played"] + counts["aborted"]
    return (f"  {game:<24} {total} episode(s): {counts['played']} played ({counts['success']} success, "
            f"{counts['lost']} lost), {counts['aborted']} aborted")
