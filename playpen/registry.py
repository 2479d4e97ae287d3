"""``./model_registry.json``: read it, and add or replace one entry without losing anything.

The file belongs to the user (clemcore reads it, people edit it by hand): it is written only
through :func:`playpen.files.edit_json_list` (lock, every other entry keeps its exact bytes,
atomic rename, ``.bak``, refusal of a file that is not a JSON list).
"""
from __future__ import annotations

import re
from pathlib import Path

from playpen import files
from playpen.errors import PlaypenError

REGISTRY_FILE = "model_registry.json"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def registry_path(directory: Path | None = None) -> Path:
    """The registry file in ``directory`` (default: the current working directory)."""
    return Path(directory or Path.cwd()) / REGISTRY_FILE


def validate_model_name(name: str) -> str:
    """A registry name becomes a directory name too: refuse separators, ``..`` and the like."""
    if not name or not _NAME_PATTERN.match(name) or ".." in name:
        raise PlaypenError(
            f"model name {name!r} is not allowed; use letters, digits, '.', '_', '+' and '-' "
            f"(no path separators, no '..', not starting with '.' or '-')")
    return name


def read_entries(path: Path | None = None) -> list[dict]:
    """The entries of a registry file ([] if it does not exist)."""
    path = Path(path) if path else registry_path()
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    entries = [entry for _, _, entry in files.json_list_spans(text, path)]
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "model_name" not in entry or "backend" not in entry:
            raise PlaypenError(f"{path}: entry {index} needs 'model_name' and 'backend'; fix or remove it")
    return entries


def upsert_entry(entry: dict, path: Path | None = None) -> str:
    """Add ``entry`` to the registry, or replace the entry with the same ``model_name``.

    Returns ``"added"``, ``"replaced"`` or ``"unchanged"``. See the module docstring for the
    guarantees.
    """
    validate_model_name(entry.get("model_name", ""))
    action = "unchanged"

    def edit(old_text: str, spans: list) -> str | None:
        nonlocal action
        matches = [span for span in spans
                   if isinstance(span[2], dict) and span[2].get("model_name") == entry["model_name"]]
        if not matches:
            action = "added"
            return files.appended(old_text, spans, entry)
        if matches[0][2] == entry:
            return None
        action = "replaced"
        return files.replaced(old_text, matches[0], entry)

    files.edit_json_list(Path(path) if path else registry_path(), edit)
    return action
