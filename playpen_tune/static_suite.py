"""The static benchmark suite (clembench ``static_1.0``): its game names, kept in this one place.

``playpen eval`` reports these games as statscore, the number meant to show that a tuned model did
not overfit to the games. Training data must therefore leave their transcripts out by default. The
rule works from a transcript's game name alone: results directories often hold these games without
the static benchmark being in the local game registry.
"""
from __future__ import annotations

STATIC_BENCHMARK = "static_1.0"
STATIC_GAMES = frozenset({"bbh", "cladder", "eqbench", "ifeval", "mmlu_pro"})
DROP_REASON = "static-suite games (--include_static_games keeps them)"


def is_static_game(game: str) -> bool:
    """Whether ``game`` (a transcript's ``meta.game_name``) belongs to the static benchmark suite."""
    return game in STATIC_GAMES
