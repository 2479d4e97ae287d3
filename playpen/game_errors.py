"""Why a game failed, in one line a user can act on.

A game that fails in its own code reaches playpen in two ways: clemcore's runners log the
exception of each episode (with its traceback, to ``clembench.log``) and carry on, then raise a
summary such as ``Could not prepare any game sessions. See clembench.log``; or the game's module
raises while it is imported, sometimes with a message of many lines (NLTK's "Resource not found"
banner). :class:`EpisodeErrors` keeps the exceptions clemcore logs while a game plays, and
:func:`one_line` turns an exception into one line: type, message without banners or colour codes,
and where in the game's code it was raised.
"""
from __future__ import annotations

import logging
import re
import traceback

MAX_MESSAGE = 300  # characters of an exception's message kept in a reason line
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NLTK_RESOURCE = re.compile(r"Resource\s+'?([\w./-]+?)'?\s+not found")


def one_line(error: BaseException) -> str:
    """``Type: message (at file:line)`` of ``error`` in one line; NLTK's missing-data banner becomes the fix."""
    message = _ANSI.sub("", str(error))
    resource = _NLTK_RESOURCE.search(message)
    if isinstance(error, LookupError) and resource and "nltk" in message.lower():
        name = resource.group(1)
        return (f"LookupError: the NLTK data '{name}' is not installed (the game needs it); install it with "
                f"'python -m nltk.downloader {name}', or offline copy an nltk_data folder holding it and set "
                f"NLTK_DATA to it")
    text = " ".join(part for part in message.replace("*", " ").split())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + " ..."
    where = _raised_at(error)
    return f"{type(error).__name__}: {text}" + (f" (at {where})" if where else "")


def _raised_at(error: BaseException) -> str | None:
    """``file:line`` of the innermost frame outside clemcore and the standard library, if any."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if "/clemcore/" not in frame.filename and "/lib/python" not in frame.filename]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def failed_in_setup(error: BaseException) -> bool:
    """Whether ``error`` was raised while the game master set an episode up, before any player answered
    (a broken game; a game without programmatic players fails later, on their empty answers)."""
    return any(frame.name in ("setup", "_on_setup") for frame in traceback.extract_tb(error.__traceback__))


class EpisodeErrors(logging.Handler):
    """Keeps the exceptions clemcore logs (``logger.exception``) while a game plays; a context manager."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])

    def __enter__(self) -> EpisodeErrors:
        logging.getLogger("clemcore").addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("clemcore").removeHandler(self)

    def reason(self) -> str | None:
        """The first logged exception in one line, with how many episodes raised; None without any."""
        if not self.errors:
            return None
        more = f"; {len(self.errors)} episodes raised" if len(self.errors) > 1 else ""
        return f"the game's code raised {one_line(self.errors[0])}{more}"
