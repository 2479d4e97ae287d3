"""Which instances ``grpo_qlora`` plays: the games of ``-g`` (or ``--suite clem``) and the instances of
a split of a split source, chosen exactly as ``playpen play`` chooses them (:func:`playpen.selection.select`:
same defaults, checks and error messages), as clemcore instance rows for the rollouts."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SplitInstances:
    """The instances of one split of the selected games."""

    games: dict  # {game: GameSpec}
    rows: dict  # {episode key: clemcore instance row}
    source: str  # the split source read (the default hub id when --split_source was not given)


def split_instances(games: list[str], suite: str | None, split: str, split_source: str | None) -> SplitInstances:
    """The games and instance rows of ``split`` of the selected games.

    Raises:
        PlaypenError: as ``playpen play`` does, e.g. for a game whose split has no instances or an
            unreadable split source (grpo_qlora has no ``--all_instances``, so the errors do not offer it).
    """
    from playpen.api import PlaypenError, game_instances, select
    from playpen_tune.rl.rollout import episode_key

    options = {"split": split, "split_source": split_source, "offer_all_instances": False}
    selections = ([select(suite, None, **options)] if suite else [select("all", game, **options) for game in games])
    specs, rows = {}, {}
    for selection in selections:
        for name, problem in selection.failed.items():
            raise PlaypenError(f"{problem}; or leave {name} out of the games")
        for name, spec in selection.games().items():
            specs[name] = spec
            rows.update((episode_key(row), row) for row in game_instances(spec).filter(selection.instances_filter()))
    return SplitInstances(games=specs, rows=rows, source=selections[0].split.source)
