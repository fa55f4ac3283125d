"""Plain messages for config mistakes made on the command line."""

from __future__ import annotations

import sys
import traceback


def unknown_field_message(e: Exception) -> str | None:
    """The error for ``--config.a.typo=...``, or None if ``e`` is something else.

    ml_collections reports a field the config lacks as a KeyError (or an
    AttributeError from one), which absl's flag parsing lets through as a long
    traceback.
    """
    tb = traceback.extract_tb(e.__traceback__)
    key_error = e if isinstance(e, KeyError) else e.__context__
    if (not tb or "ml_collections" not in tb[-1].filename
            or not isinstance(key_error, KeyError) or not key_error.args):
        return None
    detail = str(key_error.args[0]).strip()
    name = detail.splitlines()[0].strip("'\"")
    flags_given = [a.split("=")[0] for a in sys.argv[1:] if a.lstrip("-").startswith("config.")]
    given = [f for f in flags_given if f".{name}." in f + "."]
    hint = " ".join(detail.splitlines()[1:]) or "Check the spelling against the config file."
    return (f"FATAL Flags parsing error: {', '.join(given) or name}: the config has no field "
            f"{name!r}. {hint}")
