"""Read local data files (.json arrays, .jsonl lines) into lists of dict rows."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from playpen.api import PlaypenError

FILE_SUFFIXES = (".json", ".jsonl")
SHAREGPT_FIX = ("rename 'conversations' to 'messages', each message's 'from' to 'role' and 'value' to 'content', "
                "and the roles human to user, gpt to assistant")


def read_json(path: str | Path) -> Any:
    """Parse one JSON document; errors name the file, line and column."""
    path = Path(path)
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PlaypenError(
            f"{path}:{error.lineno}:{error.colno}: invalid JSON ({error.msg}); fix the file"
        ) from None


def read_rows(path: str | Path, column_sets: Sequence[Sequence[str]] = ()) -> list[dict]:
    """Load a .json file (an array of objects) or a .jsonl file (one object per line).

    When ``column_sets`` is given, every row must hold all columns of at least one of the sets.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = _read_jsonl(path)
    elif path.suffix == ".json":
        rows = read_json(path)
        if not isinstance(rows, list):
            raise PlaypenError(
                f"{path}: expected a JSON array of objects, got a JSON {type(rows).__name__}; "
                "wrap the rows in [...] or write one object per line to a .jsonl file"
            )
    else:
        raise PlaypenError(f"{path}: unsupported data file type; use a .json or .jsonl file")
    check_columns(rows, str(path), column_sets)
    return rows


def check_columns(rows: list, source: str, column_sets: Sequence[Sequence[str]]) -> None:
    """Raise if a row is not an object or lacks every one of the accepted column sets."""
    expected = " or ".join("+".join(repr(c) for c in columns) for columns in column_sets)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PlaypenError(
                f"{source}: row {index} (0-based) is a {type(row).__name__}, not an object; "
                f"each row must be an object with columns {expected or 'of your choice'}"
            )
        if column_sets and not any(all(c in row for c in columns) for columns in column_sets):
            sharegpt = (f" (ShareGPT-style rows: {SHAREGPT_FIX})" if "conversations" in row and
                        any("messages" in columns for columns in column_sets) else "")
            raise PlaypenError(
                f"{source}: row {index} (0-based) has columns {sorted(row)} but needs {expected}; "
                f"rename the columns or use another file{sharegpt}"
            )


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise PlaypenError(f"{path}: no such file; check the path")
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (some editors write one) is not data
    except UnicodeDecodeError as error:
        raise PlaypenError(f"{path}: not UTF-8 text ({error.reason}); re-encode it as UTF-8") from None


def _read_jsonl(path: Path) -> list:
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise PlaypenError(
                f"{path}:{number}: invalid JSON line ({error.msg} at column {error.colno}); "
                "each line must be one complete JSON object"
            ) from None
    return rows
