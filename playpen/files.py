"""Writing files users own without losing anything: atomic writes, and edits of JSON-list files
(``model_registry.json``, ``game_registry.json``) that keep every other byte.

An edit of a JSON-list file:

* happens under an exclusive lock (``<file>.lock``, present only while held), so concurrent runs both land;
* splices the new text into the old one: every untouched element keeps its exact bytes, order
  and formatting;
* is atomic: the new content goes to a temporary file in the same directory, is fsynced and
  renamed over the old file, so a crash leaves either the old or the new complete file;
* keeps the previous version as ``<file>.bak`` when the edit changes or removes anything (an append, which
  keeps every old byte, writes none);
* refuses to touch a file that is not a valid JSON list (it says how to fix it).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from playpen.errors import PlaypenError


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


def json_list_spans(text: str, path: Path) -> list[tuple[int, int, object]]:
    """(start, end, element) of every top-level element of the JSON list in ``text``."""
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
        element, end = decoder.raw_decode(text, position)
        spans.append((position, end, element))
        position = end
    return spans


class LockHeld(Exception):
    """:func:`lock_file` without waiting found the lock taken; ``holder`` is what the holder wrote into it."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


@contextlib.contextmanager
def lock_file(lock_path: Path, wait: bool = True):
    """Hold an exclusive lock on ``lock_path``, a file that exists only while it is held.

    The holder removes the file before it lets go, so nothing is left behind. A process that was
    waiting on the removed file sees it is no longer the one at ``lock_path`` and locks the current
    one instead (so two processes never both hold the lock). ``wait=False`` raises :class:`LockHeld`
    at once when another process holds it. Yields the open file (``a+``), e.g. to write a pid into it.
    """
    lock_path = Path(lock_path)
    while True:
        handle = open(lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise LockHeld(holder) from None
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        held = os.fstat(handle.fileno())
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            break
        handle.close()  # the file was removed by the holder we waited for: lock the new one
    try:
        yield handle
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def edit_json_list(path: Path, edit: Callable[[str, list], str | None]) -> bool:
    """Apply ``edit(old_text, spans) -> new_text`` (None: leave the file as it is) under the lock.

    ``spans`` are :func:`json_list_spans` of the old text ([] for a missing or empty file). The new
    text must parse; the old one is kept as ``<file>.bak`` unless the new text only appends to it.
    Returns whether the file was written.
    """
    path = Path(path)
    with lock_file(path.with_name(path.name + ".lock")):
        old_text = path.read_text(encoding="utf-8") if path.exists() else ""
        spans = json_list_spans(old_text, path) if old_text.strip() else []
        new_text = edit(old_text, spans)
        if new_text is None:
            return False
        json.loads(new_text)  # never write something clemcore cannot read
        if old_text.strip() and not new_text.startswith(old_text[:old_text.rindex("]")].rstrip()):
            atomic_write_text(path.with_name(path.name + ".bak"), old_text)  # an edit, not an append: keep the old
        atomic_write_text(path, new_text)
    return True


def render_element(element, indent: str) -> str:
    """``element`` as indented JSON, its continuation lines indented by ``indent``."""
    return json.dumps(element, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)


def replaced(old_text: str, span: tuple[int, int, object], element) -> str:
    """``old_text`` with the element at ``span`` replaced by ``element``, indented as the old one."""
    start, end, _ = span
    line_start = old_text.rfind("\n", 0, start) + 1
    indent = re.match(r"[ \t]*", old_text[line_start:start]).group(0)
    return old_text[:start] + render_element(element, indent) + old_text[end:]


def appended(old_text: str, spans: list, element) -> str:
    """``old_text`` with ``element`` added as the last element, indented like the element before it."""
    if not old_text.strip():
        return "[\n  " + render_element(element, "  ") + "\n]\n"
    if not spans:
        close = old_text.rindex("]")
        return old_text[:close] + "\n  " + render_element(element, "  ") + "\n" + old_text[close:]
    last_start, last_end, _ = spans[-1]
    line_start = old_text.rfind("\n", 0, last_start) + 1
    indent = re.match(r"[ \t]*", old_text[line_start:last_start]).group(0) or "  "
    return old_text[:last_end] + ",\n" + indent + render_element(element, indent) + old_text[last_end:]


def append_entry(entry: dict, path: Path) -> bool:
    """Append ``entry`` to the JSON list in ``path`` (created if missing) unless an equal entry is there.

    Returns whether it was added.
    """
    return edit_json_list(path, lambda old_text, spans: None if any(old == entry for _, _, old in spans)
                          else appended(old_text, spans, entry))
