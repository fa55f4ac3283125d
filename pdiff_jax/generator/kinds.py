"""One rule for config sections that choose a module by ``kind``.

A section such as ``autoencoder.model`` holds the keys of every kind (so a
sweep can switch kinds with one override); the chosen kind takes its own keys,
the others' are ignored, and a key no kind knows is an error naming the section.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


def plain(section: Mapping) -> dict:
    """A config section (ConfigDict, dict, or one read back from JSON) as hashable keyword
    arguments: lists become tuples."""
    d = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def module_fields(cls, derived=()) -> set[str]:
    """The dataclass fields of a Linen module a config may set (not Flax's, not derived)."""
    return {f.name for f in dataclasses.fields(cls)} - {"parent", "name", *derived}


def pick_kind(registry: Mapping[str, type], kind: str, kwargs: Mapping, *, section: str,
              derived=()) -> tuple[type, dict]:
    """``(module class of kind, the keyword arguments of kwargs that it takes)``."""
    if kind not in registry:
        raise ValueError(f"{section}.kind must be one of {tuple(registry)}, got {kind!r}")
    known = set().union(*(module_fields(c, derived) for c in registry.values()))
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"unknown {section} keys {sorted(unknown)}; known: "
                         f"{sorted(known | {'kind'})}")
    cls = registry[kind]
    own = module_fields(cls, derived)
    return cls, {k: v for k, v in kwargs.items() if k in own}
