"""``./model_registry.json``: read it, and add or replace one entry without losing anything.

The file belongs to the user (clemcore reads it, people edit it by hand). Writing it (and
appending to other JSON-list files users own, like ``game_registry.json``):

* happens under an exclusive lock (``model_registry.json.lock``), so concurrent runs both land;
* touches only the entry with the given ``model_name``: every other entry keeps its exact
  bytes, order and formatting (the new text is spliced into the old one);
* is atomic: the new content goes to a temporary file in the same directory, is fsynced and
  renamed over the old file, so a crash leaves either the old or the new complete file;
* keeps the previous version as ``model_registry.json.bak``;
* refuses to touch a file that is not a valid JSON list (it says how to fix it).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from pathlib import Path

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


def _entry_spans(text: str, path: Path) -> list[tuple[int, int, dict]]:
    """(start, end, entry) of every top-level element of the JSON list in ``text``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PlaypenError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            f"fix it by hand or move it away, playpen will not overwrite it") from None
    if not isinstance(data, list):
        raise PlaypenError(f"{path} must hold a JSON list of entries, not a "
                           f"{type(data).__name__}; fix it or move it away")
    decoder = json.JSONDecoder()
    spans = []
    position = text.index("[") + 1
    for _ in data:
        while text[position] in " \t\r\n,":
            position += 1
        entry, end = decoder.raw_decode(text, position)
        spans.append((position, end, entry))
        position = end
    return spans


def read_entries(path: Path | None = None) -> list[dict]:
    """The entries of a registry file ([] if it does not exist)."""
    path = Path(path) if path else registry_path()
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    entries = [entry for _, _, entry in _entry_spans(text, path)]
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "model_name" not in entry or "backend" not in entry:
            raise PlaypenError(f"{path}: entry {index} needs 'model_name' and 'backend'; fix or remove it")
    return entries


@contextlib.contextmanager
def _locked(path: Path):
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via temp file + fsync + rename (+ fsync of the directory)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp_name, path.stat().st_mode & 0o7777)
        else:  # mkstemp creates 0600; a new file gets the usual mode (0666 minus the umask)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(error, OSError) and error.errno and error.filename is None:  # a failed write names no file
            error.filename = str(path)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _render_entry(entry: dict, indent: str) -> str:
    body = json.dumps(entry, indent=2, ensure_ascii=False)
    return body.replace("\n", "\n" + indent)


def upsert_entry(entry: dict, path: Path | None = None) -> str:
    """Add ``entry`` to the registry, or replace the entry with the same ``model_name``.

    Returns ``"added"``, ``"replaced"`` or ``"unchanged"``. See the module docstring for the
    guarantees.
    """
    validate_model_name(entry.get("model_name", ""))
    path = Path(path) if path else registry_path()
    with _locked(path):
        old_text = path.read_text(encoding="utf-8") if path.exists() else ""
        spans = _entry_spans(old_text, path) if old_text.strip() else []
        matches = [(s, e, old) for s, e, old in spans
                   if isinstance(old, dict) and old.get("model_name") == entry["model_name"]]
        if matches:
            start, end, old_entry = matches[0]
            if old_entry == entry:
                return "unchanged"
            line_start = old_text.rfind("\n", 0, start) + 1
            indent = re.match(r"[ \t]*", old_text[line_start:start]).group(0)
            new_text = old_text[:start] + _render_entry(entry, indent) + old_text[end:]
            action = "replaced"
        else:
            new_text = _appended(old_text, spans, entry)
            action = "added"
        _write_keeping_backup(path, old_text, new_text)
    return action


def append_entry(entry: dict, path: Path) -> bool:
    """Append ``entry`` to the JSON list in ``path`` (created if missing) unless an equal entry is there.

    Every other byte of the file stays as it was; locking, atomic write, ``.bak`` and the refusal
    of a file that is not a JSON list are those of :func:`upsert_entry`. Returns whether it was added.
    """
    path = Path(path)
    with _locked(path):
        old_text = path.read_text(encoding="utf-8") if path.exists() else ""
        spans = _entry_spans(old_text, path) if old_text.strip() else []
        if any(old == entry for _, _, old in spans):
            return False
        _write_keeping_backup(path, old_text, _appended(old_text, spans, entry))
    return True


def _appended(old_text: str, spans: list, entry: dict) -> str:
    """``old_text`` with ``entry`` added as the last element, indented like the element before it."""
    if not old_text.strip():
        return "[\n  " + _render_entry(entry, "  ") + "\n]\n"
    if not spans:
        close = old_text.rindex("]")
        return old_text[:close] + "\n  " + _render_entry(entry, "  ") + "\n" + old_text[close:]
    last_start, last_end, _ = spans[-1]
    line_start = old_text.rfind("\n", 0, last_start) + 1
    indent = re.match(r"[ \t]*", old_text[line_start:last_start]).group(0) or "  "
    return old_text[:last_end] + ",\n" + indent + _render_entry(entry, indent) + old_text[last_end:]


def _write_keeping_backup(path: Path, old_text: str, new_text: str) -> None:
    """Keep ``old_text`` (if any) as ``<file>.bak``, then write ``new_text`` atomically once it parses."""
    json.loads(new_text)  # never write something clemcore cannot read
    if old_text.strip():
        atomic_write_text(path.with_name(path.name + ".bak"), old_text)
    atomic_write_text(path, new_text)
