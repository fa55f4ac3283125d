"""Which leaves of a variables tree form a flat parameter vector: ``ParamSpec``.

Leaves are named by '/'-joined paths with the collection first, exactly as
Flax Linen lays out ``variables`` (``params/layer4_1/bn2/scale``). A
:class:`ParamSpec` records the selected names, shapes and dtypes in a fixed
order (the order of :func:`variable_paths`) and the offset of each leaf in the
vector; ``subset.py`` moves values between trees and vectors with it.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.errors import UserError

SEP = "/"
# Linen's collection of BatchNorm running means and variances: numbers a network computes
# from data, not parameters trained by gradient (an entire network's vector holds both).
STATISTICS = "batch_stats"


class SubsetError(ValueError, UserError):
    """A selector, vector or variables tree does not fit a :class:`ParamSpec`."""


# ---------------------------------------------------------------------------
# Paths


def _key_name(key) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        name = str(key.key)
    elif isinstance(key, jax.tree_util.SequenceKey):
        name = str(key.idx)
    elif isinstance(key, jax.tree_util.GetAttrKey):
        name = key.name
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
        name = str(key.key)
    else:  # pragma: no cover - future key types
        name = str(key)
    if SEP in name or not name:
        raise SubsetError(f"variable key {name!r} is empty or contains {SEP!r}; "
                          "leaf paths would be ambiguous")
    return name


def path_str(path) -> str:
    return SEP.join(_key_name(k) for k in path)


def is_statistic(name: str) -> bool:
    """Whether the leaf path ``name`` is a BatchNorm running statistic."""
    return name.split(SEP, 1)[0] == STATISTICS


def named_leaves(tree) -> dict[str, Any]:
    """``{'collection/module/name': leaf}`` in pytree order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    named = {}
    for path, leaf in flat:
        named[path_str(path)] = leaf
    return named


def variable_paths(variables) -> list[str]:
    """All leaf names of ``variables`` ('/'-joined paths), in pytree order."""
    return list(named_leaves(variables))


def shape_dtype(leaf) -> tuple[tuple[int, ...], np.dtype]:
    # Works for arrays, tracers and jax.ShapeDtypeStruct (abstract variables).
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        leaf = np.asarray(leaf)
    # Canonical dtype: what the leaf becomes inside JAX (float64 -> float32 unless x64).
    return tuple(int(d) for d in leaf.shape), np.dtype(jax.dtypes.canonicalize_dtype(leaf.dtype))


def closest_names(name: str, candidates: Sequence[str], n: int = 5) -> str:
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    if not close:
        close = list(candidates[:n])
    return ", ".join(repr(c) for c in close)


# ---------------------------------------------------------------------------
# ParamSpec


def segment_ids(segments: Sequence[int] | None, dim: int) -> np.ndarray:
    """i32[D]: for each coordinate of a flat vector, the index of its tensor.

    segments: sizes of the tensors in flattening order (``ParamSpec.segments``);
    they must sum to D. None means the whole vector is one tensor.
    """
    if segments is None:
        segments = [dim]
    sizes = np.asarray(list(segments), dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or np.any(sizes <= 0):
        raise ValueError(f"segments must be positive tensor sizes, got {list(segments)}")
    if int(sizes.sum()) != dim:
        raise ValueError(f"segments sum to {int(sizes.sum())}, but D = {dim}")
    return np.repeat(np.arange(sizes.size, dtype=np.int32), sizes)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """Which leaves make up the flat vector, in order, with shapes and dtypes.

    Attributes:
      names: leaf paths, e.g. ``('batch_stats/bn3/mean', 'params/bn3/scale')``.
      shapes: one shape tuple per leaf.
      dtypes: one dtype name per leaf (``'float32'``, ``'bfloat16'``, ...),
        restored by :func:`unflatten_subset`.
      offsets: start of each leaf in the vector (derived, not compared).
      size: ``D``, the length of the flat vector.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    offsets: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        shapes = tuple(tuple(int(d) for d in s) for s in self.shapes)
        try:
            dtypes = tuple(jnp.dtype(d).name for d in self.dtypes)
        except TypeError as e:
            raise SubsetError(f"unknown dtype in {self.dtypes!r}: {e}") from e
        if not len(names) == len(shapes) == len(dtypes):
            raise SubsetError(f"ParamSpec needs one shape and dtype per name; got "
                              f"{len(names)} names, {len(shapes)} shapes, {len(dtypes)} dtypes")
        if len(set(names)) != len(names):
            raise SubsetError(f"ParamSpec names are not unique: {names}")
        if any(d < 0 for s in shapes for d in s):
            raise SubsetError(f"negative dimension in shapes {shapes}")
        offsets, total = [], 0
        for s in shapes:
            offsets.append(total)
            total += int(np.prod(s, dtype=np.int64))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "dtypes", dtypes)
        object.__setattr__(self, "offsets", tuple(offsets))

    @property
    def size(self) -> int:
        """``D``: number of scalars in the flat vector."""
        if not self.names:
            return 0
        return self.offsets[-1] + int(np.prod(self.shapes[-1], dtype=np.int64))

    @property
    def segments(self) -> list[int]:
        """Sizes of the leaves in flattening order (they sum to ``D``)."""
        return [int(np.prod(s, dtype=np.int64)) for s in self.shapes]

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_variables(cls, variables, selector) -> ParamSpec:
        """The spec of the leaves of ``variables`` chosen by ``selector``.

        ``selector`` is one of:
          * a regex string, matched with ``re.fullmatch`` against each leaf path
            (fullmatch, not search, so ``'params/bn1/scale'`` cannot also pick
            ``'params/bn1/scale_extra'``; write ``'.*bn1.*'`` for a search);
          * a list/tuple of regexes or exact names (a path is selected when it
            equals a pattern or fullmatches it);
          * an object with a ``default_subset`` attribute (a model definition),
            whose tuple of patterns is used.

        Every pattern must select at least one leaf: a pattern that selects
        nothing is almost always a typo and raises :class:`SubsetError` naming
        the closest leaf names. ``variables`` may hold arrays or
        ``jax.ShapeDtypeStruct`` (e.g. from ``jax.eval_shape(model.init, ...)``).
        Leaves are ordered as in :func:`variable_paths`.
        """
        patterns = _patterns(selector)
        named = named_leaves(variables)
        paths = list(named)
        if not paths:
            raise SubsetError("variables have no leaves to select from")
        selected = set()
        for pattern in patterns:
            try:
                regex = re.compile(pattern)
            except re.error as e:
                raise SubsetError(f"selector pattern {pattern!r} is not a valid regex: {e}") from e
            hits = [p for p in paths if p == pattern or regex.fullmatch(p)]
            if not hits:
                raise SubsetError(
                    f"selector pattern {pattern!r} matches no variable (patterns are matched "
                    f"with re.fullmatch against the full path). Closest names: "
                    f"{closest_names(pattern, paths)}")
            selected.update(hits)
        chosen = [p for p in paths if p in selected]
        shapes, dtypes = zip(*(shape_dtype(named[p]) for p in chosen), strict=True)
        return cls(tuple(chosen), tuple(shapes), tuple(d.name for d in dtypes))

    def to_json(self) -> dict:
        """A JSON-serialisable dict; :meth:`from_json` inverts it."""
        return {"names": list(self.names),
                "shapes": [list(s) for s in self.shapes],
                "dtypes": list(self.dtypes),
                "size": self.size}

    @classmethod
    def from_json(cls, d: Mapping) -> ParamSpec:
        try:
            spec = cls(tuple(d["names"]), tuple(tuple(s) for s in d["shapes"]),
                       tuple(d["dtypes"]))
        except (KeyError, TypeError) as e:
            raise SubsetError(f"not a ParamSpec JSON dict ({type(e).__name__}: {e}): "
                              f"{dict(d)!r:.200}") from e
        if "size" in d and int(d["size"]) != spec.size:
            raise SubsetError(f"ParamSpec JSON says size {d['size']} but its shapes add up "
                              f"to {spec.size}")
        return spec


def _patterns(selector) -> tuple[str, ...]:
    if hasattr(selector, "default_subset"):
        selector = selector.default_subset
    if isinstance(selector, str):
        return (selector,)
    if isinstance(selector, Sequence) and selector and all(isinstance(s, str) for s in selector):
        return tuple(selector)
    raise SubsetError("selector must be a regex string, a non-empty list/tuple of regexes or "
                      f"names, or an object with .default_subset; got {selector!r:.200}")


# ---------------------------------------------------------------------------
# Vector <-> subset <-> variables
