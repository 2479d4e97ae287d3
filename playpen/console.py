"""A quiet console: library chatter goes to a log file in the run directory, ``-v`` shows it too.

Progress bars (tqdm writes them itself) and playpen's own lines stay on the console, and so do the
libraries' logged warnings and errors (TRL's, transformers', clemcore's: something to act on).
What moves to the log file: Python warnings (FutureWarnings about renamed arguments, torch's
``pin_memory`` notice, ...) and the INFO lines libraries log to the console (clemcore's
per-episode lines); the file also gets the libraries' warnings and errors. A few library warnings are
notices about an optional speed-up that is absent, with nothing for the user to do in the run
(``LOG_ONLY``); they go to the file alone. The file is written when the command ends, and only if its
directory exists then: a command that failed before creating its run directory leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

LIBRARIES = ("clemcore", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "torch",
             "huggingface_hub")
FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
# bitsandbytes on a CPU with AVX512-BF16 warns on import that it could not fetch its faster 4-bit kernel
# from the hub ("Failed to load CPU gemm_4bit_forward from kernels-community"); playpen runs offline without it
LOG_ONLY = ("bitsandbytes.backends.cpu.ops",)


class _BufferHandler(logging.Handler):
    """Keeps formatted records in memory until the command ends."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


_held = _BufferHandler()  # what LOG_ONLY loggers logged before a command's log file was known


def hold_log_only_notices() -> None:
    """Keep the LOG_ONLY loggers off the console from the start of a command: bitsandbytes warns when
    it is first imported, which may happen before :func:`library_chatter_to` (transformers' training
    arguments import it). The next ``library_chatter_to`` block writes what they logged to its file."""
    for name in LOG_ONLY:
        logger = logging.getLogger(name)
        if _held not in logger.handlers:
            logger.addHandler(_held)
        logger.propagate = False


def _to_log_only(logger: logging.Logger, buffer: logging.Handler, verbose: bool):
    """Send ``logger``'s records to ``buffer`` alone (and stderr with ``verbose``); return the undo."""
    previous_propagate, previous_handlers = logger.propagate, list(logger.handlers)
    logger.handlers = [buffer] + ([logging.StreamHandler(sys.stderr)] if verbose else [])
    logger.propagate = False

    def undo():
        logger.handlers, logger.propagate = previous_handlers, previous_propagate
    return undo


@contextlib.contextmanager
def library_chatter_to(log_file: Path, verbose: bool = False):
    """Route library chatter into ``log_file`` (appended) while the block runs; ``verbose`` keeps it on the console too.

    Imports clemcore first: its logging configuration (made on import) must be in place to be adjusted.
    """
    import clemcore  # noqa: F401 - configures clemcore's console handlers on import

    buffer = _BufferHandler()
    buffer.lines, _held.lines = _held.lines, []
    if verbose and buffer.lines:
        print("\n".join(buffer.lines), file=sys.stderr)
    restore = []
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in LIBRARIES)]
    loggers += [logger for name, logger in logging.root.manager.loggerDict.items()
                if isinstance(logger, logging.Logger) and name.split(".")[0] in LIBRARIES]
    for logger in dict.fromkeys(loggers):
        if not logger.propagate or logger is logging.root:
            logger.addHandler(buffer)
            restore.append(lambda logger=logger: logger.removeHandler(buffer))
        if not verbose and logger is not logging.root:
            for handler in _console_handlers(logger):
                previous = handler.level
                handler.setLevel(max(previous, logging.WARNING))
                restore.append(lambda handler=handler, previous=previous: handler.setLevel(previous))
    for name in ("py.warnings", *LOG_ONLY):
        restore.append(_to_log_only(logging.getLogger(name), buffer, verbose))
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for undo in reversed(restore):
            undo()
        if buffer.lines and log_file.parent.is_dir():
            with open(log_file, "a", encoding="utf-8") as stream:
                stream.write("\n".join(buffer.lines) + "\n")
            if not verbose:
                print(f"library messages: {log_file} (-v shows them here)")


def close_progress_bars() -> None:
    """Close the progress bars a failing command left open (a training run's, tqdm's), so that the line
    saying why it failed starts a line of its own instead of trailing the bar; nothing if tqdm was not used."""
    tqdm = sys.modules.get("tqdm.std")
    if tqdm is None:
        return
    for bar in list(getattr(tqdm.tqdm, "_instances", ())):
        bar.close()
