"""How two configs (as config.json holds them) differ, across pdiff_jax versions.

A key that a newer pdiff_jax added (absent from an older workdir's config.json)
is no difference while it holds its default: a new key's default keeps the old
behaviour, so the old artifacts are what the new config would make. Free of JAX
(the suite launcher uses it); the defaults are built only when a key is new.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

__all__ = ["ABSENT", "config_differences", "real_differences", "value_at", "with_new_defaults"]


def config_differences(saved: Mapping, current: Mapping, limit: int | None = 5) -> list[str]:
    """``['zoo.num_models: 0 -> 200', ...]``: the fields where two config dicts differ.

    For a refusal that says what changed (``saved`` is a workdir's config.json,
    ``current`` ``json.loads(config.to_json_best_effort())``); at most ``limit``
    entries, then ``'... and N more'``.
    """
    out = [f"{key}: {a!r} -> {b!r}" for key, a, b in real_differences(saved, current)]
    if limit is None or len(out) <= limit:
        return out
    return [*out[:limit], f"... and {len(out) - limit} more"]


ABSENT = "<absent>"


def _differing(a, b, prefix: str = ""):
    """``(dotted key, old, new)`` for every leaf where two nested config dicts differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b)):
            yield from _differing(a.get(key, ABSENT), b.get(key, ABSENT), f"{prefix}{key}.")
    elif a != b:
        yield prefix[:-1], a, b


def value_at(tree, key: str):
    for part in key.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return ABSENT
        tree = tree[part]
    return tree


def real_differences(old: Mapping, new: Mapping) -> list[tuple[str, object, object]]:
    """``_differing``, less the keys added since ``old`` was written that hold their default."""
    out, defaults = [], None
    for key, a, b in _differing(old, new):
        if a == ABSENT and b != ABSENT:
            defaults = defaults or _defaults()   # built only when a key is new
            if b == value_at(defaults, key):
                continue
        out.append((key, a, b))
    return out


@functools.cache
def _defaults_json() -> str:
    from pdiff_jax.config.defaults import get_config

    return get_config().to_json_best_effort()


def _defaults() -> dict:
    return json.loads(_defaults_json())


def with_new_defaults(saved: Mapping) -> dict:
    """``saved`` (an older config.json) with the keys added since, at their defaults:
    the config that run had, as this version spells it (zoo sharing compares these)."""

    def fill(old, defaults):
        if not isinstance(old, Mapping) or not isinstance(defaults, Mapping):
            return old
        out = dict(old)
        for key, value in defaults.items():
            out[key] = fill(old[key], value) if key in old else value
        return out

    return fill(saved, _defaults())
