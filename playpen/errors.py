"""The one exception type for mistakes a user can fix."""


class PlaypenError(Exception):
    """A user-fixable error: bad config key, unknown learner/model/game, bad data, ...

    The message must say what to change. The CLI prints it as one line (``error: ...``)
    without a traceback and exits with status 2.
    """

    exit_code = 2
