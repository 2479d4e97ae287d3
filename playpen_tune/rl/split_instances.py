"""Which instances ``grpo_qlora`` plays: the games of ``-g`` (or ``--suite clem``) and the instances of
a split of a split source, chosen exactly as ``playpen play`` chooses them (:func:`playpen.selection.select`:
same defaults, checks and error messages), as clemcore instance rows for the rollouts."""
from __future__ import annotations


def split_instances(games: list[str], suite: str | None, split: str, split_source: str | None) -> tuple[dict, dict]:
    """``({game: GameSpec}, {episode key: clemcore instance row})`` of ``split`` of the selected games.

    Raises:
        PlaypenError: as ``playpen play`` does, e.g. for a game whose split has no instances or an
            unreadable split source.
    """
    from clemcore.clemgame import GameInstances

    from playpen.selection import select
    from playpen_tune.rl.rollout import episode_key

    selections = ([select(suite, None, split=split, split_source=split_source)] if suite else
                  [select("all", game, split=split, split_source=split_source) for game in games])
    specs, rows = {}, {}
    for selection in selections:
        for name, spec in selection.games().items():
            specs[name] = spec
            rows.update((episode_key(row), row)
                        for row in GameInstances.from_game_spec(spec).filter(selection.instances_filter()))
    return specs, rows
