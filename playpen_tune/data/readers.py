"""The table of data-source kinds whose rows the learners read: one reader per kind, in one place.

A reader turns a ``--dataset`` source into rows: ``read(source, split, column_sets) -> (name, rows)``,
where ``name`` names the source in messages, ``rows`` are dicts holding all columns of one of
``column_sets`` (checked again by the learner) and ``split`` is the hub split (``--dataset_split``).
The built-in kinds are ``file`` (.json/.jsonl) and ``hub`` (a Hugging Face dataset id); clemcore
results directories (``transcripts``) are read as episodes, not rows (:mod:`playpen_tune.data.transcripts`).

A plugin adds a kind through the ``playpen_register_data_sources`` hook: ``{kind: reader}``, where
the reader also has ``claims(source) -> bool``. Plugin readers are asked first, in the order of the
table, so they can take sources the built-in kinds would reject (other suffixes, URLs).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from playpen.api import PlaypenError, add_unique
from playpen_tune.data.hub import load_hub_dataset


class RowReader(Protocol):
    """What a data-source kind provides (see the module docstring)."""

    def claims(self, source: str) -> bool: ...

    def read(self, source: str, split: str, column_sets: Sequence[Sequence[str]]) -> tuple[str, Iterable[dict]]: ...


class FileReader:
    """``file``: a local .json (array of objects) or .jsonl (one object per line) file."""

    def claims(self, source: str) -> bool:
        from pathlib import Path

        from playpen_tune.data.files import FILE_SUFFIXES

        return Path(source).expanduser().suffix in FILE_SUFFIXES and not Path(source).expanduser().is_dir()

    def read(self, source, split, column_sets):
        from playpen_tune.data.files import read_rows

        return source, read_rows(source, column_sets)


class HubReader:
    """``hub``: a Hugging Face Hub dataset id (``name`` or ``org/name``), split ``--dataset_split``."""

    def claims(self, source: str) -> bool:
        return False  # what is left once nothing else claimed a source (see sources.source_kind)

    def read(self, source, split, column_sets):
        name = f"{source} (split {split})"
        dataset = load_hub_dataset(source, split)
        columns = next((list(c) for c in column_sets if all(col in dataset.column_names for col in c)), None)
        if columns is None:
            expected = " or ".join("+".join(repr(c) for c in column_set) for column_set in column_sets)
            raise PlaypenError(f"{name}: has columns {sorted(dataset.column_names)} but needs {expected}; "
                               "use another dataset or save it as a local .jsonl file with these columns")
        return name, _hub_rows(dataset.select_columns(columns))


def _hub_rows(dataset, batch_size: int = 1000) -> Iterator[dict]:
    """The rows of a Hub dataset as dicts, a batch at a time (not the whole table as Python objects)."""
    for batch in dataset.iter(batch_size=batch_size):
        yield from (dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True))


BUILTIN_READERS = {"file": FileReader(), "hub": HubReader()}
TRANSCRIPTS = "transcripts"  # the kind of clemcore results directories (episodes, not rows)


def plugin_readers() -> dict[str, RowReader]:
    """The kinds plugins add (``playpen_register_data_sources``); a kind declared twice is an error."""
    from playpen.api import plugin_manager

    table: dict[str, RowReader] = {}
    for contribution in plugin_manager().hook.playpen_register_data_sources():
        for kind, reader in (contribution or {}).items():
            if kind in BUILTIN_READERS or kind == TRANSCRIPTS:
                raise PlaypenError(f"data source '{kind}' is built in; a plugin cannot replace it, choose another name")
            add_unique(table, kind, reader, "data source")
    return table


def reader(kind: str) -> RowReader:
    """The reader of a kind (built in or from a plugin)."""
    return BUILTIN_READERS.get(kind) or plugin_readers()[kind]
