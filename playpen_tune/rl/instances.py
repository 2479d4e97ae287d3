"""Which game instances a split holds: a stand-in for the split selection of ``playpen play``.

A split is named by ``--split`` (``train``, ``heldout``, ...). Without ``--split_source`` it is the
game's own instances file ``in/instances_<split>.json`` (clemcore's layout, e.g. the demo game's
``instances_train.json``). With ``--split_source FILE`` (``.jsonl``/``.json`` rows or ``.csv`` with
``game, experiment, task_id, split``) it is the rows of that split, taken from the game's default
instances file and filtered with clemcore's ``GameInstances.filter``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from playpen.errors import PlaypenError

SPLIT_COLUMNS = ("game", "experiment", "task_id", "split")


def read_split_file(path: Path) -> list[dict]:
    """The rows of a local split file (jsonl, json list or csv with ``game, experiment, task_id, split``)."""
    path = Path(path)
    if not path.is_file():
        raise PlaypenError(f"--split_source {path} does not exist; pass a .jsonl, .json or .csv split file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
        elif path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except ValueError as error:
        raise PlaypenError(f"--split_source {path} cannot be read: {error}") from None
    if not isinstance(rows, list) or any(not isinstance(row, dict) or set(SPLIT_COLUMNS) - set(row) for row in rows):
        raise PlaypenError(f"--split_source {path}: every row needs the fields {', '.join(SPLIT_COLUMNS)}")
    return rows


def select_instances(game_spec, split: str, split_source: str | None = None) -> list[dict]:
    """The clemcore instance rows (``{"experiment": ..., "game_instance": ...}``) of ``split`` of one game.

    Raises:
        PlaypenError: the split has no instances of this game (nothing could be played).
    """
    from clemcore.clemgame import GameInstances

    game = game_spec["game_name"]
    if split_source is None:
        instances_file = Path(game_spec["game_path"]) / "in" / f"instances_{split}.json"
        if not instances_file.is_file():
            raise PlaypenError(f"game '{game}' has no {split} split: {instances_file} does not exist; "
                               f"pass --split_source FILE with a {split} split, or another --split")
        game_spec.instances = f"instances_{split}"
        rows = list(GameInstances.from_game_spec(game_spec))
    else:
        wanted = {(str(row["experiment"]), int(row["task_id"])) for row in read_split_file(Path(split_source))
                  if row["game"] == game and row["split"] == split}
        rows = list(GameInstances.from_game_spec(game_spec).filter(
            lambda row: (row["experiment"]["name"], int(row["game_instance"]["game_id"])) in wanted))
    if not rows:
        raise PlaypenError(f"game '{game}' has no instances in the {split} split"
                           f"{f' of {split_source}' if split_source else ''}; choose a game or split that has some")
    return rows
