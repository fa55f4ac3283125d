"""``--set KEY=VALUE`` overrides of a config, checked against it before anything runs.

launch/sweep.py applies a suite's common overrides with them, and
benchmarks/frontier_points.py the fields it changes in a finished run's config.
"""

from __future__ import annotations

import ast

from pdiff_jax.errors import ConfigError


def parse_sets(items) -> dict:
    """``['a.b=1', 'c=x']`` (``--set``) -> ``{'a.b': 1, 'c': 'x'}``: Python literals, else
    strings."""
    out = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE (e.g. generator.diffusion.train.steps=500), "
                             f"got {item!r}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def check_overrides(config, source: str, overrides: dict):
    """Apply ``overrides`` to a locked copy of ``config`` and return it; unknown keys or
    wrong types raise, naming ``source`` (what asked for them)."""
    trial = config.copy_and_resolve_references()
    trial.lock()
    for key, value in overrides.items():
        node = trial
        *parents, leaf = key.split(".")
        try:
            for p in parents:
                node = node[p]
            node[leaf] = value
        except (KeyError, AttributeError, TypeError) as e:
            # KeyError's str() is the repr of its message; ml_collections puts its hint there.
            why = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise ConfigError(f"{source}: cannot set {key}={value!r}: {why}") from e
    return trial
