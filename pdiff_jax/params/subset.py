"""Flat vectors <-> a chosen subset of a network's variables.

p-diff does not generate whole networks: it generates a SUBSET of their
variables (for example the scale and bias of the last two BatchNorm layers)
and keeps the rest of a trained "base" network fixed. This module names such a
subset, flattens it to one ``f32[D]`` vector and puts vectors back.

Leaves are named by '/'-joined paths with the collection first, exactly as
Flax Linen lays out ``variables``::

    params/layer4_1/bn2/scale        batch_stats/layer4_1/bn2/mean

A :class:`ParamSpec` records the selected names, shapes and dtypes in a fixed
order (the order of :func:`variable_paths`, i.e. sorted pytree order, whatever
order the selector patterns were written in) and the offset of each leaf in
the vector.

Recommended jit/vmap pattern. ``ParamSpec`` is hashable and registered as a
*static* pytree (it has no array leaves; the whole object is treedef data), so
it can be passed as an ordinary argument: it is never traced, ``jit`` caches on
its equality, and ``vmap`` needs ``None`` for it::

    spec = ParamSpec.from_variables(variables, r"params/bn[23]/(scale|bias)")
    vecs = jax.vmap(flatten_subset, in_axes=(0, None))(stacked_variables, spec)
    subsets = jax.vmap(unflatten_subset, in_axes=(0, None))(vecs, spec)   # K trees
    full = jax.vmap(merge, in_axes=(None, 0))(variables, subsets)         # K nets

    @functools.partial(jax.jit, static_argnames="spec")   # or just jax.jit
    def evaluate(vec, base, x, spec): ...

Binding the spec with ``functools.partial`` works equally well. Shapes and
dtypes are checked when a function is traced, so under ``jit`` a mismatch
raises at trace time, before anything runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.params.spec import (
    SEP,
    ParamSpec,
    SubsetError,
    closest_names,
    named_leaves,
    path_str,
    segment_ids,
    shape_dtype,
    variable_paths,
)

__all__ = [
    "ParamSpec",
    "SubsetError",
    "flatten_subset",
    "merge",
    "segment_ids",
    "select_subset",
    "unflatten_subset",
    "variable_paths",
]


def _checked_leaves(variables, spec: ParamSpec) -> list:
    """The leaves named in ``spec``, after checking they exist and fit."""
    named = named_leaves(variables)
    leaves = []
    for name, shape, dtype in zip(spec.names, spec.shapes, spec.dtypes, strict=True):
        if name not in named:
            raise SubsetError(
                f"variable {name!r} of the spec is missing: the spec was made for another "
                f"architecture? Closest names: {closest_names(name, list(named))}")
        leaf = named[name]
        got_shape, got_dtype = shape_dtype(leaf)
        if got_shape != shape:
            raise SubsetError(f"variable {name!r} has shape {got_shape} but the spec expects "
                              f"{shape}: the spec was made for another architecture?")
        if got_dtype.name != dtype:
            raise SubsetError(f"variable {name!r} has dtype {got_dtype.name} but the spec "
                              f"expects {dtype}")
        leaves.append(leaf)
    return leaves


def _nest(spec: ParamSpec, leaves) -> dict:
    tree: dict = {}
    for name, leaf in zip(spec.names, leaves, strict=True):
        *parents, last = name.split(SEP)
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return tree


def select_subset(variables, spec: ParamSpec) -> dict:
    """The leaves of ``variables`` named in ``spec``, as a nested dict, unchanged."""
    return _nest(spec, _checked_leaves(variables, spec))


def flatten_subset(variables, spec: ParamSpec) -> jax.Array:
    """Concatenate the spec's leaves, cast to float32, in spec order: ``f32[D]``.

    Every value must survive the trip back through :func:`unflatten_subset`
    exactly, so integer leaves beyond ``2**24`` in magnitude (where float32 has
    no more whole numbers) are refused; this is checked on concrete leaves only,
    not on traced ones under ``jit``/``vmap``.
    """
    leaves = _checked_leaves(variables, spec)
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    for name, leaf in zip(spec.names, leaves, strict=True):
        _check_integer_leaf_fits(name, leaf)
    return jnp.concatenate([jnp.ravel(jnp.asarray(x)).astype(jnp.float32) for x in leaves])


# float32 represents every integer up to this magnitude, and not all beyond.
_FLOAT32_EXACT_INT = 2 ** 24


def _is_integer_dtype(dtype) -> bool:
    return jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)


def _check_integer_leaf_fits(name: str, leaf) -> None:
    if isinstance(leaf, jax.core.Tracer) or not _is_integer_dtype(leaf.dtype):
        return
    values = np.asarray(leaf)
    if values.size and np.abs(values.astype(np.int64)).max() > _FLOAT32_EXACT_INT:
        raise SubsetError(f"integer variable {name!r} holds values beyond 2**24 "
                          f"(max |x| = {np.abs(values.astype(np.int64)).max()}), which a float32 "
                          "vector cannot hold exactly; leave it out of the selector")


def _check_vector(vector, spec: ParamSpec):
    """The one rule for vectors: a float32 array (numpy or JAX) of shape ``[D]``.

    Anything else is refused rather than cast, since a cast can change values
    without a trace: a float64 vector rounds (1 + 1e-12 becomes 1.0), a list
    takes whatever dtype numpy infers. Under ``jit``/``vmap`` the same rule holds
    for the traced vector's dtype and shape.
    """
    fix = "convert it on purpose with np.asarray(v, np.float32)"
    if not (hasattr(vector, "dtype") and hasattr(vector, "shape")):
        raise SubsetError(f"vector is a {type(vector).__name__}, not an array; expected "
                          f"float32[{spec.size}]: {fix}")
    # The dtype as given, not canonicalized: a float64 numpy vector is not float32.
    dtype = np.dtype(vector.dtype)
    if dtype != np.float32:
        raise SubsetError(f"vector has dtype {dtype.name}; expected float32 ({fix}, if the "
                          "cast is what you mean: a silent cast could hide a lossy vector)")
    shape = tuple(int(d) for d in vector.shape)
    if shape != (spec.size,):
        hint = (" (a batch of vectors? use jax.vmap(unflatten_subset, in_axes=(0, None)))"
                if len(shape) == 2 and shape[-1] == spec.size else "")
        raise SubsetError(f"vector has shape {shape}; the spec needs ({spec.size},){hint}")
    return vector


def _check_integer_values(vector, spec: ParamSpec) -> None:
    """Integer and bool leaves take only values they hold exactly (6.0, not 6.99; bool 0 or 1).

    Checked on a concrete vector; a traced one cannot be inspected, and its
    values are rounded to the nearest integer instead (see :func:`unflatten_subset`).
    """
    if isinstance(vector, jax.core.Tracer):
        return
    host = None
    for name, shape, dtype, offset in zip(spec.names, spec.shapes, spec.dtypes, spec.offsets,
                                          strict=True):
        if not _is_integer_dtype(dtype):
            continue
        if host is None:
            host = np.asarray(vector)
        part = host[offset:offset + int(np.prod(shape, dtype=np.int64))]
        if jnp.issubdtype(dtype, jnp.bool_):
            bad = ~np.isin(part, (0.0, 1.0))
            allowed = "only 0 or 1"
        else:
            info = np.iinfo(dtype)
            lo, hi = max(info.min, -_FLOAT32_EXACT_INT), min(info.max, _FLOAT32_EXACT_INT)
            with np.errstate(invalid="ignore"):
                bad = ~((part == np.round(part)) & (part >= lo) & (part <= hi))
            allowed = f"only whole numbers in [{lo}, {hi}]"
        if bad.any():
            i = int(np.argmax(bad))
            raise SubsetError(
                f"vector[{offset + i}] = {part[i]!s} is for the {dtype} variable {name!r}, which "
                f"takes {allowed}; a cast would change it silently. Round those entries "
                f"(vector[{offset}:{offset + part.size}]) or leave {name!r} out of the selector")


def unflatten_subset(vector, spec: ParamSpec) -> dict:
    """``f32[D]`` -> the nested subset pytree, with each leaf's shape and dtype restored.

    The result is nested dicts keyed like the variables, holding only the
    spec's leaves, e.g. ``{'params': {'bn3': {'scale': f32[C], 'bias': f32[C]}}}``.

    One rule for what goes in: ``vector`` is a float32 array of shape ``[D]``
    (numpy or JAX; a float64 array, another dtype or a list is refused: convert
    it with ``np.asarray(v, np.float32)``), and no value may change on its way
    into a leaf other than by rounding to that leaf's float precision: integer
    and bool leaves take only whole numbers they can hold (6.0, not 6.99; a
    bool 0 or 1). Values are checked when ``vector`` is concrete; under
    ``jit``/``vmap`` they cannot be, and integer/bool leaves take the nearest
    integer (``round``, not truncation).
    """
    vector = _check_vector(vector, spec)
    _check_integer_values(vector, spec)
    vector = jnp.asarray(vector)
    leaves = []
    for shape, dtype, offset in zip(spec.shapes, spec.dtypes, spec.offsets, strict=True):
        n = int(np.prod(shape, dtype=np.int64))
        part = vector[offset:offset + n].reshape(shape)
        if _is_integer_dtype(dtype):
            part = jnp.round(part)
        leaves.append(part.astype(dtype))
    return _nest(spec, leaves)


def merge(variables, subset):
    """``variables`` with the leaves present in ``subset`` replaced; the rest unchanged.

    ``subset`` is a pytree like the one :func:`unflatten_subset` returns. The
    structure (and container types) of ``variables`` are kept. Each subset leaf
    must name an existing variable of the same shape and dtype. For K subsets
    stacked on a leading axis use ``jax.vmap(merge, in_axes=(None, 0))``.
    """
    replacements = named_leaves(subset)
    paths = variable_paths(variables)
    known = set(paths)
    for name in replacements:
        if name not in known:
            raise SubsetError(f"subset leaf {name!r} is not a variable of the network. "
                              f"Closest names: {closest_names(name, paths)}")

    def replace(path, old):
        name = path_str(path)
        if name not in replacements:
            return old
        new = replacements[name]
        (old_shape, old_dtype), (new_shape, new_dtype) = shape_dtype(old), shape_dtype(new)
        if new_shape != old_shape:
            hint = (" (a stacked subset? use jax.vmap(merge, in_axes=(None, 0)))"
                    if new_shape[1:] == old_shape else "")
            raise SubsetError(f"subset leaf {name!r} has shape {new_shape} but the variable "
                              f"has {old_shape}{hint}")
        if new_dtype != old_dtype:
            raise SubsetError(f"subset leaf {name!r} has dtype {new_dtype.name} but the "
                              f"variable has {old_dtype.name}")
        return new

    return jax.tree_util.tree_map_with_path(replace, variables)
