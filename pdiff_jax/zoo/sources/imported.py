"""What every importer returns and checks alike: the members it chose, their vectors, and
the stored accuracies they arrived with.

An importer reads a zoo made elsewhere into ``f32[K, D]`` vectors in the order of the
run's ``ParamSpec`` (every variable of the model: an imported member is a whole
network). Every problem with the source is a :class:`ZooSourceError`: one line naming
the file, the problem and the fix, raised by the config check before any work.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pdiff_jax.errors import MismatchError, UserError
from pdiff_jax.params.subset import ParamSpec

# How many members an error names before '... and N more'.
SHOWN = 8
# Standard errors of a binomial proportion a subset test set may add to the tolerance.
SUBSET_STANDARD_ERRORS = 3.0


class ZooSourceError(ValueError, UserError):
    """``zoo.source`` cannot be imported: a file is missing or malformed, or does not fit
    the model or the filter; the message names the file and the fix."""


def listed(items, shown: int = SHOWN) -> str:
    """'a, b, c' or 'a, b, ... and 7 more'."""
    items = [str(i) for i in items]
    more = f", ... and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


@dataclasses.dataclass
class ImportedZoo:
    """The members of an imported zoo, ready to be stored as the run's ``Zoo``.

    Attributes:
      vectors: f32[K, D], in the order of ``spec``.
      spec: every variable of the model (``zoo.selector`` covering the whole network).
      members: where each member came from, e.g. ``'row 1287'`` or ``'net_03.pth'``.
      stored_test_acc: f32[K] test accuracy in percent as the source states it, or None.
      meta: format, path, filter and members, stored in the zoo's metadata.
      base: full variables the vectors are merged into (member 0), set by ``import_zoo``.
    """

    vectors: np.ndarray
    spec: ParamSpec
    members: tuple[str, ...]
    stored_test_acc: np.ndarray | None
    meta: dict
    base: dict | None = None

    def check_accuracies(self, measured: np.ndarray, *, tolerance: float, n_test: int,
                         subset: bool) -> None:
        """Raise unless the stored test accuracies agree with ``measured`` (see
        :func:`check_stored_accuracies`); nothing to check when the source has none."""
        if self.stored_test_acc is not None:
            check_stored_accuracies(self.stored_test_acc, measured, self.members,
                                    tolerance=tolerance, n_test=n_test, subset=subset)


def allowed_difference(stored: np.ndarray, *, tolerance: float, n_test: int,
                       subset: bool) -> np.ndarray:
    """f32[K]: how far (percentage points) a measured accuracy may lie from a stored one.

    ``tolerance`` (``zoo.source_tolerance``) covers arithmetic and data-pipeline
    differences. When the library measures on a subset of the test set the zoo was
    measured on (``data.max_test``), a correct network's accuracy on the subset still
    varies by the binomial standard error sqrt(p (1 - p) / n), so 3 of those are added.
    """
    p = np.clip(np.asarray(stored, np.float64) / 100.0, 0.0, 1.0)
    sampling = 100.0 * np.sqrt(p * (1.0 - p) / max(n_test, 1)) if subset else 0.0 * p
    return (tolerance + SUBSET_STANDARD_ERRORS * sampling).astype(np.float32)


def check_stored_accuracies(stored, measured, members, *, tolerance: float, n_test: int,
                            subset: bool) -> None:
    """Raise ``MismatchError`` naming every member whose stored test accuracy (percent)
    differs from ``measured`` by more than :func:`allowed_difference`.

    Members stored as NaN (runs that diverged) are not compared.
    """
    stored = np.asarray(stored, np.float32)
    measured = np.asarray(measured, np.float32)
    allowed = allowed_difference(stored, tolerance=tolerance, n_test=n_test, subset=subset)
    off = np.flatnonzero(np.isfinite(stored) & (np.abs(measured - stored) > allowed))
    if off.size == 0:
        return
    worst = off[np.argmax(np.abs(measured - stored)[off])]
    shown = listed(f"{members[i]} ({stored[i]:.2f} stored, {measured[i]:.2f} measured)"
                   for i in off)
    raise MismatchError(
        f"zoo.source: {off.size} of {len(stored)} imported networks disagree with their "
        f"stored test accuracy by more than {allowed[worst]:.2f} points: {shown}. The "
        "networks do not compute what the zoo says on this data: check data.name (the same "
        "data set, preprocessed as the zoo was), model.kwargs (e.g. the activation) and "
        "zoo.source_filter, or raise --config.zoo.source_tolerance if the test sets differ")


def check_finite(vectors: np.ndarray, members, fix: str) -> None:
    """Raise ``ZooSourceError`` naming the members whose vectors hold NaN or inf."""
    bad = np.flatnonzero(~np.all(np.isfinite(vectors), axis=1))
    if bad.size:
        raise ZooSourceError(f"zoo.source: {bad.size} networks hold NaN or inf parameters "
                             f"({listed(members[i] for i in bad)}); {fix}")


def choose_members(n_available: int, num_models: int, seed: int) -> np.ndarray:
    """i64[min(n, num_models)]: which of ``n_available`` candidates become the zoo, in
    their order; a seeded draw when there are more than ``num_models``."""
    if n_available <= num_models:
        return np.arange(n_available)
    rng = np.random.default_rng([seed, 26])
    return np.sort(rng.choice(n_available, num_models, replace=False))


def column_order(source: ParamSpec, target: ParamSpec, what: str) -> np.ndarray:
    """i64[D]: the column of a ``source``-ordered vector feeding each coordinate of a
    ``target``-ordered one (both name the same leaves with the same shapes)."""
    missing = sorted(set(target.names) - set(source.names))
    extra = sorted(set(source.names) - set(target.names))
    if missing or extra:
        problems = ([f"lacks {listed(missing)}"] if missing else []) + (
            [f"names {listed(extra)}, which the model does not have"] if extra else [])
        raise ZooSourceError(
            f"zoo.source: {what} {' and '.join(problems)}; an imported zoo holds every "
            "variable of the model: export whole networks of this model (model.name, "
            "model.kwargs)")
    where = {n: (o, s) for n, o, s in zip(source.names, source.offsets, source.shapes,
                                          strict=True)}
    columns = []
    for name, shape in zip(target.names, target.shapes, strict=True):
        offset, got = where[name]
        if tuple(got) != tuple(shape):
            raise ZooSourceError(f"zoo.source: {what} gives {name} the shape {tuple(got)}, "
                                 f"the model has {tuple(shape)}: set model.kwargs (or "
                                 "data.channels / data.image_size) to the zoo's architecture")
        columns.append(np.arange(offset, offset + int(np.prod(shape, dtype=np.int64))))
    return np.concatenate(columns) if columns else np.zeros(0, np.int64)
