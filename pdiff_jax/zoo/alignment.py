"""Zoo alignment: remove the hidden-unit permutation symmetry of independently trained networks.

Two networks that differ only by an ordering of their hidden units (or conv
channels) compute the same function, yet their parameter vectors are far
apart, and averages of such vectors collapse to chance. Weight matching
(Ainsworth et al. 2023, "Git Re-Basin", Sec. 3.2) permutes every zoo member so
that its weights lie as close as possible to one reference member, without
changing what any member computes.

Which permutation group acts on which axis of each variable is a
:class:`~pdiff_jax.zoo.permutation_spec.PermutationSpec`: derived from the call order
for plain chains (:mod:`pdiff_jax.zoo.permutation_spec`), and from the residual
stream for ResNets (:mod:`pdiff_jax.zoo.resnet_permutations`).

Weight matching, per member: start from identity permutations and, in random
order, solve for one group with all others fixed: a linear assignment
(``scipy.optimize.linear_sum_assignment``) maximising sum_i <w_ref_i, w_other_pi(i)>
over every array the group touches; stop when a full pass improves nothing.
BatchNorm running statistics are permuted with their layer but are not used
as evidence (they are functions of the weights, on another scale).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
from absl import logging
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

from pdiff_jax.config.choices import ZOO_ALIGNS as ALIGN_METHODS
from pdiff_jax.params.subset import ParamSpec
from pdiff_jax.zoo.permutation_spec import (
    SEQUENTIAL_MODELS,
    PermutationSpec,
    sequential_permutation_spec,
)
from pdiff_jax.zoo.resnet_permutations import is_resnet, resnet_permutation_spec

__all__ = [
    "ALIGN_METHODS",
    "PermutationSpec",
    "align_to_mean",
    "align_to_reference",
    "align_zoo",
    "apply_permutations",
    "permutation_spec_for",
    "sequential_permutation_spec",
    "weight_matching",
]


def permutation_spec_for(model_def) -> PermutationSpec:
    """The permutation spec of a known architecture.

    Plain chains (``SEQUENTIAL_MODELS``) get :func:`sequential_permutation_spec`;
    ResNets (resnet18, resnet50, any :class:`~pdiff_jax.models.resnet.ResNet`) get
    :func:`pdiff_jax.zoo.resnet_permutations.resnet_permutation_spec`.
    """
    if is_resnet(model_def):
        return resnet_permutation_spec(model_def)
    if model_def.name not in SEQUENTIAL_MODELS:
        raise ValueError(f"weight matching knows the permutation structure of "
                         f"{list(SEQUENTIAL_MODELS)} and of ResNets (resnet18, resnet50), "
                         f"not {model_def.name!r}; use zoo.align='none' or add a "
                         "PermutationSpec for it")
    return sequential_permutation_spec(model_def)


# ----------------------------------------------------------------------------- permutations


def _group_axis_view(array: np.ndarray, axis: int, n: int) -> np.ndarray:
    """``array`` with the group's units on axis 0: f32[n, rest].

    An axis of length m*n is a channels-last flattening (index = spatial*n + c)
    whose channel part belongs to the group.
    """
    length = array.shape[axis]
    if length % n:
        raise ValueError(f"axis of length {length} is not a multiple of the group size {n}")
    moved = np.moveaxis(array, axis, 0)
    m = length // n
    split = moved.reshape(m, n, *moved.shape[1:])
    return np.moveaxis(split, 1, 0).reshape(n, -1)


def _permute_axis(array: np.ndarray, axis: int, perm: np.ndarray) -> np.ndarray:
    n = len(perm)
    length = array.shape[axis]
    if length == n:
        return np.take(array, perm, axis=axis)
    shape = array.shape
    split = array.reshape(*shape[:axis], length // n, n, *shape[axis + 1:])
    return np.take(split, perm, axis=axis + 1).reshape(shape)


def apply_permutations(arrays: Mapping[str, np.ndarray], pspec: PermutationSpec,
                       perms: Mapping[str, np.ndarray], *, except_group: str | None = None
                       ) -> dict[str, np.ndarray]:
    """``arrays`` (path -> array) with unit ``perm[i]`` moved to position i on every group axis.

    Paths absent from ``pspec`` pass through unchanged.
    """
    out = dict(arrays)
    for path, axes in pspec.axes.items():
        if path not in out:
            continue
        a = out[path]
        for axis, g in enumerate(axes):
            if g is not None and g != except_group:
                a = _permute_axis(a, axis, perms[g])
        out[path] = a
    return out


def weight_matching(reference: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray],
                    pspec: PermutationSpec, *, max_iterations: int = 100, seed: int = 0,
                    evidence_prefix: str = "params/") -> dict[str, np.ndarray]:
    """Permutations (group -> i64[n]) that bring ``other`` closest to ``reference``.

    Coordinate ascent over groups on sum over arrays of <W_ref, P(W_other)>;
    only arrays whose path starts with ``evidence_prefix`` enter the objective.
    """
    rng = np.random.default_rng(seed)
    groups = {g: [(p, a) for p, a in members if p.startswith(evidence_prefix) and p in other]
              for g, members in pspec.groups().items()}
    perms = {g: np.arange(n) for g, n in pspec.sizes.items()}
    names = sorted(pspec.sizes)
    for _ in range(max_iterations):
        improved = False
        for g in rng.permutation(names):
            n = pspec.sizes[g]
            permuted = apply_permutations({p: other[p] for p, _ in groups[g]}, pspec, perms,
                                          except_group=g)
            cost = np.zeros((n, n), np.float64)
            for path, axis in groups[g]:
                ref = _group_axis_view(np.asarray(reference[path], np.float64), axis, n)
                oth = _group_axis_view(np.asarray(permuted[path], np.float64), axis, n)
                cost += ref @ oth.T       # cost[i, j]: reference unit i vs other unit j
            _, cols = linear_sum_assignment(cost, maximize=True)
            old = cost[np.arange(n), perms[g]].sum()
            new = cost[np.arange(n), cols].sum()
            if new > old + 1e-9 * max(1.0, abs(old)):
                perms[g] = cols
                improved = True
        if not improved:
            break
    return perms


# ----------------------------------------------------------------------------- zoo vectors


def _split_vector(vector: np.ndarray, spec: ParamSpec) -> dict[str, np.ndarray]:
    return {name: vector[off:off + int(np.prod(shape, dtype=np.int64))].reshape(shape)
            for name, shape, off in zip(spec.names, spec.shapes, spec.offsets, strict=True)}


def _join_vector(arrays: Mapping[str, np.ndarray], spec: ParamSpec) -> np.ndarray:
    return np.concatenate([np.ravel(arrays[name]) for name in spec.names]).astype(np.float32)


def align_to_reference(vectors: np.ndarray, spec: ParamSpec, pspec: PermutationSpec, *,
                       reference_index: int = 0, max_iterations: int = 100,
                       seed: int = 0) -> np.ndarray:
    """Permute every zoo member's hidden units to match member ``reference_index``.

    Args:
      vectors: f32[K, D] zoo members flattened with ``spec``.
      spec: their ParamSpec; it must hold every variable a permutation acts on
        (an entire-network zoo), otherwise aligning would change the networks.
      pspec: the architecture's permutation structure (:func:`permutation_spec_for`).
      reference_index: the member the others are aligned to (left unchanged).
      max_iterations: passes over the groups per member.
      seed: order in which groups are visited.

    Returns:
      f32[K, D]: the aligned members; each computes the same function as before.
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != spec.size:
        raise ValueError(f"vectors must be f32[K, {spec.size}], got {vectors.shape}")
    missing = sorted(set(pspec.axes) - set(spec.names))
    if missing:
        raise ValueError(f"cannot align a zoo whose vectors lack permuted variables {missing[:4]}"
                         " (a subset zoo?): alignment needs entire networks; use "
                         "zoo.align='none'")
    if not 0 <= reference_index < len(vectors):
        raise ValueError(f"reference_index {reference_index} outside the zoo of {len(vectors)}")
    reference = _split_vector(vectors[reference_index], spec)
    aligned = vectors.copy()
    # The cost matrices are tiny: BLAS threads waking up for each of them cost more than
    # the products (MLP-3, K = 200 on a loaded 2-core machine: 112 s with 2 threads, ~35x
    # less with one).
    with threadpool_limits(limits=1, user_api="blas"):
        for k in range(len(vectors)):
            if k == reference_index:
                continue
            member = _split_vector(vectors[k], spec)
            perms = weight_matching(reference, member, pspec, max_iterations=max_iterations,
                                    seed=seed + k)
            aligned[k] = _join_vector(apply_permutations(member, pspec, perms), spec)
    return aligned


def align_to_mean(vectors: np.ndarray, spec: ParamSpec, pspec: PermutationSpec, *,
                  passes: int = 10, max_iterations: int = 100, seed: int = 0) -> np.ndarray:
    """MergeMany: match each member in turn to the mean of the OTHER members, repeatedly.

    ``vectors`` f32[K, D] as for :func:`align_to_reference`, whose result is the start.
    A pass visits every member; the loop stops after a pass that permuted nothing, or
    after ``passes``. Returns f32[K, D], each member computing the same function.
    """
    aligned = align_to_reference(vectors, spec, pspec, max_iterations=max_iterations,
                                 seed=seed)
    K = len(aligned)
    if K < 3:
        return aligned
    total = aligned.astype(np.float64).sum(0)
    rng = np.random.default_rng(seed)
    with threadpool_limits(limits=1, user_api="blas"):
        for p in range(passes):
            changed = 0
            for k in rng.permutation(K):
                others = _split_vector(((total - aligned[k]) / (K - 1)).astype(np.float32),
                                       spec)
                member = _split_vector(aligned[k], spec)
                perms = weight_matching(others, member, pspec, max_iterations=max_iterations,
                                        seed=seed + p * K + int(k))
                if all(np.array_equal(v, np.arange(len(v))) for v in perms.values()):
                    continue
                new = _join_vector(apply_permutations(member, pspec, perms), spec)
                total += new.astype(np.float64) - aligned[k]
                aligned[k] = new
                changed += 1
            logging.info("zoo: merge_many pass %d permuted %d of %d members", p + 1, changed, K)
            if not changed:
                break
    return aligned


def align_zoo(vectors: np.ndarray, spec: ParamSpec, model_def, *, method: str,
              reference_index: int = 0) -> np.ndarray:
    """The collect-stage option ``zoo.align``: f32[K, D] -> f32[K, D].

    ``method`` is 'none' (returned unchanged) or 'weight_matching'.
    """
    if method not in ALIGN_METHODS:
        raise ValueError(f"zoo.align must be one of {list(ALIGN_METHODS)}, not {method!r}")
    if method == "none":
        return vectors
    t = time.perf_counter()
    pspec = permutation_spec_for(model_def)
    if method == "merge_many":
        aligned = align_to_mean(vectors, spec, pspec)
    else:
        aligned = align_to_reference(vectors, spec, pspec, reference_index=reference_index)
    spread = lambda v: np.linalg.norm(v - v.mean(0), axis=1).mean()
    logging.info("zoo: %s aligned %d members in %.1f s; mean L2 distance to the zoo mean "
                 "%.3f -> %.3f", method, len(vectors), time.perf_counter() - t,
                 spread(vectors), spread(aligned))
    return aligned
