"""Which errors are the user's (one line, no traceback) and which are bugs (traceback).

The command line (``pdiff_jax.main``) prints a user error as one line and exits
with :func:`exit_code_for`: 2 for usage errors (a bad config value, an unknown
flag or stage), 1 for other user errors (data missing, an unreadable
checkpoint, a selector or vector that does not fit, training that diverged, a
workdir that cannot be written). Anything else is a bug in this library and
keeps its traceback.

Every user error type derives from :class:`UserError` (or :class:`UsageError`),
wherever it is defined; this module imports nothing from the library.
"""

from __future__ import annotations

import errno
import os

# Exit codes of the command line.
EXIT_USER = 1
EXIT_USAGE = 2

# OSErrors that are the machine's state, not a bug: the message says what to do.
_USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                          errno.ENOTDIR, errno.EEXIST})


class UserError(Exception):
    """Marker base: the message tells the user what is wrong and how to fix it."""

    exit_code = EXIT_USER


class UsageError(UserError):
    """The command or its config is wrong (exit 2): nothing ran."""

    exit_code = EXIT_USAGE


class ConfigError(ValueError, UsageError):
    """A config value is out of range or unknown; the message names field, value and fix."""


class MismatchError(ValueError, UserError):
    """Stored artifacts or arrays do not fit together (another zoo, another subset, NaNs in
    a zoo); the message says what to retrain or re-collect."""


class CheckpointError(RuntimeError, UserError):
    """An artifact or checkpoint is missing or unreadable; the message says what to do."""


class WorkdirError(OSError, UserError):
    """The workdir cannot be created or written; the message names it and the fix.

    Raised as ``WorkdirError(errno.EACCES, message)``: ``errno`` is kept for code that
    tests it, and the message prints without OSError's ``[Errno 13]`` prefix.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code for a user error, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, UserError):
        return exc.exit_code
    if isinstance(exc, FloatingPointError):   # training's NaN/inf check: the user's settings
        return EXIT_USER
    if isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
        return EXIT_USER
    return None


def traceback_requested(verbosity: int = 0) -> bool:
    """Show tracebacks of user errors too: ``--verbosity=1`` (or more) or ``PDIFF_TRACEBACK=1``."""
    return verbosity >= 1 or os.environ.get("PDIFF_TRACEBACK", "") not in ("", "0")


def user_message(exc: BaseException) -> str:
    """``exc``'s message for the terminal: its first line stays first, the rest follows
    indented (instructions such as DataMissingError's commands are kept)."""
    text = str(exc).strip() or type(exc).__name__
    first, *rest = text.splitlines()
    return "\n".join([first, *("  " + line for line in rest if line.strip())])
