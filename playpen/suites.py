"""The table of evaluation suites: name (``--suite``), clemcore game selector and score name, in one
place for the CLI choices, the game selection, val.json and the base-vs-tuned comparison.

A plugin adds a suite through the ``playpen_register_eval_suites`` hook (a list of
:class:`EvalSuite`); a name declared twice is an error.
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


BUILTIN_SUITES = (
    EvalSuite("clem", {"benchmark": ["2.0"]}, "clemscore", "games of benchmark 2.0"),
    EvalSuite("static", {"benchmark": ["static_1.0"]}, "statscore", "benchmark static_1.0"),
)
GAME_SUITE = "game"  # the suite of -g GAME; its score counts as clemscore


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
