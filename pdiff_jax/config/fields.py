"""Reading a config's fields and wording a problem with one: what config checks share.

Every problem is one line naming the field, the value and a fix (:func:`fail`), with the
fix written as the command-line flag that applies it (:func:`flag`).
"""

from __future__ import annotations

import difflib
import functools
import numbers
import re

from pdiff_jax.errors import ConfigError


@functools.cache
def defaults():
    from pdiff_jax.config.defaults import get_config

    return get_config()


def get_field(config, path: str):
    node = config
    for part in path.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            raise ConfigError(f"the config has no field {path}; start from "
                              "pdiff_jax.config.defaults.get_config() (or a configs/*.py file) "
                              "and override fields") from None
    return node


def flag(path: str, value) -> str:
    if isinstance(value, str):
        text = value if re.fullmatch(r"[\w.+-]+", value) else repr(value)
    elif isinstance(value, (tuple, list)):
        text = repr(tuple(value))
        text = f"'{text}'"
    else:
        text = repr(value)
    return f"--config.{path}={text}"


def example(path: str) -> str:
    try:
        return "e.g. " + flag(path, get_field(defaults(), path))
    except ConfigError:
        return "see pdiff_jax/config/defaults.py"


def fail(path: str, requirement: str, value, fix: str | None = None):
    if hasattr(value, "to_dict"):  # a ConfigDict's repr spans lines
        value = value.to_dict()
    raise ConfigError(f"{path} must be {requirement}, got {value!r}; {fix or example(path)}")


def is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v  # not NaN


def closest(value, choices) -> str | None:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return close[0] if close else None
