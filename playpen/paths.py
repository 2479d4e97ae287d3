"""Path arguments of the wrong kind (a file where a directory is expected, or the reverse) as user errors."""
from __future__ import annotations

from pathlib import Path

from playpen.errors import PlaypenError


def refuse_file(path: str | Path, what: str) -> Path:
    """``path`` where a directory is expected (it may not exist yet): refuse an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PlaypenError(f"{what} {path} is a file, not a directory; pass a directory")
    return path


def refuse_directory(path: str | Path, what: str) -> Path:
    """``path`` where a file is expected: refuse an existing directory."""
    path = Path(path)
    if path.is_dir():
        raise PlaypenError(f"{what} {path} is a directory, not a file; pass the file inside it")
    return path
