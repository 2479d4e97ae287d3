"""Instance splits: which game instances ``playpen eval`` and ``playpen play`` play, and which ones
``playpen learn`` must not train on.

A split source is either a Hugging Face Hub dataset id (default ``colab-potsdam/playpen-data``,
upstream playpen's: config ``instances`` lists the clem suite's instances, ``instances-static`` the
static suite's, each in the hub splits ``train`` and ``validation``), a local ``.jsonl``, ``.json``
(an array) or ``.csv`` file, or a directory written by ``datasets``' ``save_to_disk`` (e.g. a copy of
the hub dataset for offline machines: a DatasetDict of splits, or one Dataset). Every row names
``game``, ``experiment`` and ``task_id`` (clemcore's ``game_id``); rows of a file (or of a saved
single Dataset) also name their ``split``. A split becomes a clemcore instances
filter (:func:`to_instances_filter`), the condition ``clemcore.cli.run(instances_filter=...)`` takes.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from playpen.errors import PlaypenError

DEFAULT_SPLIT_SOURCE = "colab-potsdam/playpen-data"
HUB_CONFIGS = {"clem": "instances", "static": "instances-static"}  # suite -> config of a hub split source
EVAL_SPLIT = "validation"
COLUMNS = ("game", "experiment", "task_id")
FILE_SUFFIXES = (".jsonl", ".json", ".csv")

Instance = tuple[str, str, int]  # (game, experiment, task_id)


class SplitSourceUnreadable(PlaypenError):
    """The split source could not be read (the hub is unreachable and nothing is cached)."""


class NoSuchSplit(PlaypenError):
    """The split source has no split of that name."""


@dataclass(frozen=True)
class InstanceSplit:
    """The instances of one split of a split source."""

    source: str
    split: str
    instances: frozenset  # of (game, experiment, task_id)
    revision: str | None = None  # the hub dataset's revision (commit, tag or branch); None: its main branch

    def games(self) -> set[str]:
        return {game for game, _, _ in self.instances}

    def of_game(self, game: str) -> set[tuple[str, int]]:
        """``{(experiment, task_id)}`` of ``game`` in this split."""
        return {(experiment, task_id) for name, experiment, task_id in self.instances if name == game}

    def instances_filter(self) -> Callable[[dict], bool]:
        """The clemcore instances filter that keeps this split's instances."""
        return to_instances_filter([dict(zip(COLUMNS, instance, strict=True)) for instance in self.instances])

    def describe(self) -> str:
        return f"split '{self.split}' of {self.source}" + (f" at revision {self.revision}" if self.revision else "")


def to_instances_filter(dataset: Iterable[dict]) -> Callable[[dict], bool]:
    """Turn rows with ``game``, ``experiment`` and ``task_id`` (a ``datasets.Dataset`` or any iterable
    of dicts) into a clemcore instances filter: a condition on clemcore's instance rows
    (``game_name``, ``experiment``, ``game_instance``) that is true for the instances the rows name.

    Pass it as ``instances_filter`` to ``clemcore.cli.run`` or to ``GameInstances.filter``. The filter
    itself is clemcore's (``clemcore.clemgame.instances.to_instance_filter``).
    """
    from clemcore.clemgame.instances import to_instance_filter

    rows = list(dataset)
    for index, row in enumerate(rows):
        missing = [column for column in COLUMNS if column not in row]
        if missing:
            raise PlaypenError(f"instances row {index} (0-based) has no {', '.join(missing)}; every row needs "
                               f"{', '.join(COLUMNS)}")
    return to_instance_filter(rows)


def to_sub_selector(dataset: Iterable[dict]) -> Callable[[str, str], list[int]]:
    """playpen 2.x's instance selector: rows with ``game``, ``experiment`` and ``task_id`` turned into
    ``(game, experiment) -> [task_id, ...]``, the ``sub_selector`` of clemcore 2.x's instance iterators.
    With clemcore 3.7, filter instances with :func:`to_instances_filter` instead."""
    task_ids: dict[tuple[str, str], list[int]] = {}
    for row in dataset:
        task_ids.setdefault((row["game"], row["experiment"]), []).append(int(row["task_id"]))
    return lambda game, experiment: task_ids.get((game, experiment), [])


def is_local(source: str) -> bool:
    """True for a local split file or saved dataset (by suffix or because it exists), False for a hub id."""
    path = Path(source).expanduser()
    return path.suffix.lower() in FILE_SUFFIXES or path.exists()


def load_split(source: str | None, split: str, suites: Sequence[str] = tuple(HUB_CONFIGS),
               revision: str | None = None) -> InstanceSplit:
    """The instances of ``split`` in ``source`` (None: the default hub source).

    ``suites`` names the hub configs to read (``clem`` -> ``instances``, ``static`` ->
    ``instances-static``); a local file holds every suite's rows. ``revision`` pins a hub source to a
    commit, tag or branch (the split dataset can change under a published number).

    Raises:
        SplitSourceUnreadable: the hub source cannot be reached and is not cached.
        PlaypenError: the source lacks the columns, does not have ``split``, or a local file is missing.
    """
    source = source or DEFAULT_SPLIT_SOURCE
    if revision and is_local(source):
        raise PlaypenError(f"--split_revision {revision}: {source} is a local split source, which has no revisions; "
                           f"drop --split_revision, or pass a hub dataset id")
    if Path(source).expanduser().is_dir():
        rows = _saved_rows(Path(source).expanduser(), split)
    elif is_local(source):
        rows = _file_rows(Path(source).expanduser(), split)
    else:
        rows = [row for suite in suites for row in _hub_rows(source, HUB_CONFIGS[suite], split, revision)]
    instances = set()
    for index, row in enumerate(rows):
        try:
            instances.add((str(row["game"]), str(row["experiment"]), int(row["task_id"])))
        except (TypeError, ValueError):
            raise PlaypenError(f"{source}: row {index} (0-based) of split '{split}' has task_id "
                               f"{row['task_id']!r}, not an integer game_id; fix the split source") from None
    if not instances:
        raise PlaypenError(f"{source}: split '{split}' has no rows; pass another --split or --split_source")
    return InstanceSplit(source=source, split=split, instances=frozenset(instances), revision=revision)


def _check_columns(source: str, columns: Iterable[str], needed: Sequence[str]) -> None:
    missing = [column for column in needed if column not in set(columns)]
    if missing:
        raise PlaypenError(f"{source}: split source has no column {', '.join(repr(c) for c in missing)} "
                           f"(columns: {', '.join(sorted(columns)) or 'none'}); a split source needs "
                           f"{', '.join(needed)}")


def _file_rows(path: Path, split: str) -> list[dict]:
    if not path.is_file():
        raise PlaypenError(f"split source {path} does not exist; pass a .jsonl/.json/.csv file with "
                           f"{', '.join(COLUMNS)}, split, or a hub dataset id")
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise PlaypenError(f"split source {path}: unsupported file type; use {', '.join(FILE_SUFFIXES)}")
    text = path.read_text(encoding="utf-8-sig")  # spreadsheet programs save CSV with a byte-order mark
    if not text.strip():
        raise PlaypenError(f"split source {path} is empty; it needs one row per instance with "
                           f"{', '.join(COLUMNS)}, split")
    try:
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
        elif path.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise PlaypenError(f"{path}:{error.lineno}: invalid JSON ({error.msg}); fix the split file") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise PlaypenError(f"{path}: a split file holds one object per row; fix the file")
    if not rows:
        raise PlaypenError(f"split source {path} holds no rows; it needs one row per instance with "
                           f"{', '.join(COLUMNS)}, split")
    needed = (*COLUMNS, "split")
    for row in rows:
        _check_columns(str(path), row, needed)
    return _rows_of_split(str(path), rows, split)


def _rows_of_split(source: str, rows: list[dict], split: str) -> list[dict]:
    _check_one_split_per_instance(source, rows)
    names = sorted({str(row["split"]) for row in rows})
    if split not in names:
        raise NoSuchSplit(f"{source} has no split '{split}' (splits: {', '.join(names) or 'none'}); "
                           f"pass --split {' or --split '.join(names) if names else 'NAME'}")
    return [row for row in rows if str(row["split"]) == split]


def _check_one_split_per_instance(source: str, rows: list[dict]) -> None:
    """An instance in two splits would be trained on and evaluated: refuse the source."""
    splits: dict = {}
    for row in rows:
        splits.setdefault((str(row["game"]), str(row["experiment"]), str(row["task_id"])), set()).add(str(row["split"]))
    doubled = sorted(instance for instance, names in splits.items() if len(names) > 1)
    if doubled:
        shown = "; ".join(f"{'/'.join(instance)} in {', '.join(sorted(splits[instance]))}" for instance in doubled[:3])
        more = f" and {len(doubled) - 3} more" if len(doubled) > 3 else ""
        raise PlaypenError(f"{source}: {len(doubled)} instance(s) belong to more than one split ({shown}{more}); "
                           f"each instance belongs to one split, so what is trained on is never evaluated: fix "
                           f"the split source")


def _saved_rows(path: Path, split: str) -> list[dict]:
    """Rows of a ``save_to_disk`` directory: split ``split`` of a DatasetDict, or a Dataset with a split column."""
    import datasets

    try:
        saved = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise PlaypenError(f"split source {path} is a directory but not one written by datasets' save_to_disk; "
                           f"pass a .jsonl/.json/.csv file or a saved dataset") from None
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise NoSuchSplit(f"{path} has no split '{split}' (splits: {', '.join(sorted(saved))}); "
                               f"pass --split {' or --split '.join(sorted(saved))}")
        _check_columns(str(path), saved[split].column_names, COLUMNS)
        return list(saved[split].select_columns(list(COLUMNS)))
    _check_columns(str(path), saved.column_names, (*COLUMNS, "split"))
    return _rows_of_split(str(path), list(saved.select_columns([*COLUMNS, "split"])), split)


def _hub_rows(source: str, config: str, split: str, revision: str | None = None) -> list[dict]:
    """Rows of one hub config and split (at ``revision``), read with ``datasets.load_dataset`` (the local cache
    offline)."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    from playpen.hub import offline_if_requested

    try:
        with offline_if_requested():
            dataset = datasets.load_dataset(source, config, split=split, revision=revision)
    except ConnectionError as error:
        at = f", revision {revision}" if revision else ""
        raise SplitSourceUnreadable(f"cannot read the instance splits of '{source}' (config '{config}'{at}): the "
                                    f"Hugging Face Hub is unreachable ({error}) and no cached copy exists") from None
    except DatasetNotFoundError:
        raise PlaypenError(f"split source '{source}' is neither a local .jsonl/.json/.csv file nor a hub "
                           f"dataset; check --split_source") from None
    except ValueError as error:  # an unknown split or config
        raise NoSuchSplit(f"split source '{source}' (config '{config}') has no split '{split}' or no such "
                           f"config ({error}); pass another --split") from None
    _check_columns(f"{source} (config {config})", dataset.column_names, COLUMNS)
    return list(dataset.select_columns(list(COLUMNS)))
