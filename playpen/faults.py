"""Faults of the machine, not of the user's input: a full disk, a read-only or forbidden directory,
Ctrl-C or SIGTERM, a second run into the same results directory.

Each ends in one ``error:`` line that names the path and what to do (exit 2), or in one
``interrupted; resume with: ...`` line (exit 130 for SIGINT, 143 for SIGTERM).
"""
from __future__ import annotations

import contextlib
import errno
import os
import shlex
import signal
import threading
from pathlib import Path

from playpen.errors import PlaypenError

# errors of writing a file that the user fixes with space or another directory, not with other input
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_write_fault(error: BaseException) -> bool:
    """Whether ``error`` is an OS-level write failure (no space, read-only, permission, name too long)."""
    return isinstance(error, OSError) and error.errno in WRITE_ERRNOS


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (or its nearest parent)."""
    stats = os.statvfs(_nearest_existing(path))
    return stats.f_bavail * stats.f_frsize


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def write_fault_error(error: OSError, fix: str) -> PlaypenError:
    """The one-line error of a failed write: which path, what the OS said, and ``fix``."""
    path = error.filename or "a file"
    if error.errno in _NO_SPACE:
        free = f" ({_mib(free_bytes(Path(path)))} free)" if error.filename else ""
        return PlaypenError(f"cannot write {path}: no space left on its filesystem{free}; free some space, or {fix}")
    return PlaypenError(f"cannot write {path}: {error.strerror}; {fix}")


def filesystem_fault(path: Path, needed: int) -> str | None:
    """``"read-only"`` or ``"full"`` when the filesystem of ``path`` cannot take ``needed`` more bytes, else None.

    Some writers (torch.save, safetensors) report a full disk as a RuntimeError without an errno;
    after such a failure this tells whether the disk was the cause.
    """
    if os.statvfs(_nearest_existing(path)).f_flag & os.ST_RDONLY:
        return "read-only"
    return "full" if free_bytes(path) < needed else None


@contextlib.contextmanager
def disk_faults_as_errors(path: Path, fix: str, needed: int = 1):
    """Turn a write failure under ``path`` into one :class:`PlaypenError` line that ends in ``fix``.

    An ``OSError`` of :data:`WRITE_ERRNOS` is reported as is; any other exception counts as a disk
    fault when the filesystem is read-only or has less than ``needed`` bytes free afterwards.
    """
    try:
        yield
    except PlaypenError:
        raise
    except OSError as error:
        if not is_write_fault(error):
            raise
        raise write_fault_error(error, fix) from None
    except Exception as error:
        fault = "full" if os.strerror(errno.ENOSPC) in str(error) else filesystem_fault(path, needed)
        if fault is None:
            raise
        cause = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if fault == "read-only":
            raise PlaypenError(f"cannot write {path}: its filesystem is read-only ({cause}); {fix}") from None
        raise PlaypenError(f"cannot write {path}: its filesystem is full ({_mib(free_bytes(path))} free; {cause}); "
                           f"free some space, or {fix}") from None


def check_free_space(path: Path, needed: int, what: str, fix: str) -> None:
    """Refuse before long work when the filesystem of ``path`` clearly cannot hold ``needed`` bytes."""
    free = free_bytes(path)
    if free < needed:
        raise PlaypenError(f"{path} is on a filesystem with {_mib(free)} free, but {what} need about "
                           f"{_mib(needed)}; free some space, or {fix}")


# ----------------------------------------------------------------------------- locks

@contextlib.contextmanager
def exclusive(lock_path: Path, what: str, fix: str):
    """Hold an exclusive lock on ``lock_path`` (which records our pid) or refuse naming the process holding it.

    The lock goes when the process ends, however it ends; the file is removed when the block ends
    (:func:`playpen.files.lock_file`).
    """
    from playpen.files import LockHeld, lock_file

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(lock_file(lock_path, wait=False))
        except LockHeld as held:
            raise PlaypenError(f"{what} is in use by playpen process {held.holder or 'another process'} "
                               f"({lock_path}); wait until it has finished, or {fix}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


# ----------------------------------------------------------------------------- interrupts

class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM. ``resume`` says how the interrupted command's argv must change to continue.

    ``resume`` maps an option to its value (added unless the argv has it: ``{"-r": dir}``), or a flag
    to True (added) / False (removed): ``{"--resume": True, "--overwrite": False}``.
    """

    def __init__(self, signum: int = signal.SIGINT, resume: dict | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.resume = resume or {}

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_interrupt():
    """While inside, SIGINT and SIGTERM raise :class:`Interrupted` (SIGINT also when the shell started us
    with it ignored); the previous handlers come back afterwards. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def resumable(resume):
    """Re-raise an interrupt inside as :class:`Interrupted` carrying ``resume`` (a dict, or a callable returning
    one)."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, "signum", signal.SIGINT)
        changes = dict(getattr(interrupt, "resume", {}))
        changes.update(resume() if callable(resume) else resume)
        raise Interrupted(signum, changes) from None


def _has_option(argv: list[str], names: tuple[str, ...]) -> bool:
    return any(arg in names or arg.startswith(tuple(f"{name}=" for name in names if name.startswith("--")))
               for arg in argv)


def resume_command(argv: list[str], changes: dict, aliases: dict[str, tuple[str, ...]]) -> str:
    """``argv`` changed as :class:`Interrupted` asks, as a shell line.

    ``aliases``: ``{"-r": ("-r", "--results_dir")}``."""
    argv = list(argv)
    for option, value in changes.items():
        names = aliases.get(option, (option,))
        if value is False:
            argv = [arg for arg in argv if arg not in names]
        elif value is True:
            if not _has_option(argv, names):
                argv.append(option)
        elif not _has_option(argv, names):
            argv += [option, str(value)]
    return shlex.join(argv)
