"""The table of evaluation suites: name (``--suite``), clemcore game selector and score name, in one
place for the CLI choices, the game selection, val.json and the base-vs-tuned comparison.

A plugin adds a suite through the ``playpen_register_eval_suites`` hook (a list of
:class:`EvalSuite`); a name declared twice is an error.

The static suite (clembench's benchmark ``static_1.0``, scored as statscore) is defined here once: its
benchmark for the game selection and the results layout, and its game names, by which the built-in
learners keep its transcripts out of training data (statscore is meant to show that a tuned model did not
overfit to the games; a results directory often holds these games while the local game registry lacks the
static benchmark, so the rule works from a transcript's game name alone).
"""
from __future__ import annotations

from dataclasses import dataclass

from playpen.tables import add_unique


@dataclass(frozen=True)
class EvalSuite:
    """One suite of games and the score ``playpen eval`` reports for it.

    Attributes:
        name: the ``--suite`` value and the key of val.json's ``suites``.
        selector: the clemcore game selector of its games, e.g. ``{"benchmark": ["2.0"]}``.
        score: the name of its score (clemcore's clemscore formula over its games) in val.json,
            the terminal summary and comparison.md.
        help: what ``playpen eval --help`` says about it.
    """

    name: str
    selector: dict
    score: str
    help: str

    def __str__(self) -> str:
        return f"{self.name} ({self.selector}, score {self.score})"


STATIC_BENCHMARK = "static_1.0"
STATIC_GAMES = frozenset({"bbh", "cladder", "eqbench", "ifeval", "mmlu_pro"})  # the games of static_1.0
BUILTIN_SUITES = (
    EvalSuite("clem", {"benchmark": ["2.0"]}, "clemscore", "games of benchmark 2.0"),
    EvalSuite("static", {"benchmark": [STATIC_BENCHMARK]}, "statscore", f"benchmark {STATIC_BENCHMARK}"),
)
GAME_SUITE = "game"  # the suite of -g GAME; its score counts as clemscore


def is_static_game(game: str) -> bool:
    """Whether ``game`` (a game name, e.g. a transcript's ``meta.game_name``) belongs to the static suite."""
    return game in STATIC_GAMES


def eval_suites() -> dict[str, EvalSuite]:
    """The built-in suites, then the suites plugins add (``playpen_register_eval_suites``)."""
    from playpen.plugins import pm

    table: dict[str, EvalSuite] = {suite.name: suite for suite in BUILTIN_SUITES}
    for contribution in pm.hook.playpen_register_eval_suites():
        for suite in contribution or []:
            add_unique(table, suite.name, suite, "eval suite")
    return table


def score_names() -> list[str]:
    """The score of every suite, in table order (``clemscore``, ``statscore``, then the plugins')."""
    return [suite.score for suite in eval_suites().values()]
