"""Zoo normalization: an affine map fitted to the zoo, stored with the generator.

The autoencoder sees ``(x - mean) / std``. Two granularities:
  * ``coordinate``: one mean/std per coordinate (each parameter of the zoo
    becomes zero-mean, unit-variance). A coordinate that barely varies across
    the zoo would divide by ~0, so its std is floored at ``std_floor`` times
    the RMS of the tensor (segment) it belongs to (and at ``abs_floor``).
  * ``tensor``: one mean/std per segment (tensor), so relative sizes inside a
    tensor are kept. Needs the segment sizes; without them the whole vector is
    one segment.
  * ``none``: identity.
Both statistics are stored as ``f32[D]`` vectors whatever the mode, so
applying the map never depends on the mode.

``components = n > 0`` then projects the normalized zoo onto its top n principal
directions (at most K - 1: the centred zoo spans no more), so the autoencoder sees
f32[n] coordinates instead of f32[D]. Every zoo member keeps its exact coordinates
when n >= its rank, and a decoder's output stays in the zoo's own span, which a
dense decoder with a per-coordinate head learned anyway, at D x hidden weights per
layer: for whole networks (D = 40,785, K = 200) that head was the whole cost.

``basis`` says how that projection is kept: ``'dense'`` (the default) as orthonormal
rows f32[n, D]; ``'implicit'`` as coefficients f32[n, K] over the zoo's own members,
the zoo attached to the normalizer and read a block of columns at a time
(implicit_basis.py: for zoos whose f32[n, D] basis would not fit beside them).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pdiff_jax.config.choices import NORMALIZATION_BASES as BASES
from pdiff_jax.config.choices import NORMALIZATION_MODES as MODES
from pdiff_jax.params.subset import segment_ids

from . import implicit_basis


class Normalizer(NamedTuple):
    mean: np.ndarray  # f32[D]
    std: np.ndarray  # f32[D], > 0
    # Optional projection (``components > 0``): coords = (y - center) @ basis.T / scale.
    center: np.ndarray | None = None  # f32[D], the zoo's mean in normalized units
    basis: np.ndarray | None = None   # f32[n, D], orthonormal rows ('dense')
    scale: np.ndarray | None = None   # f32[], RMS of the zoo's coordinates (they become ~1)
    # 'implicit' instead of ``basis``: basis = coefficients @ ((zoo - mean) / std - center).
    coefficients: np.ndarray | None = None   # f32[n, K]
    zoo: np.ndarray | None = None     # f32[K, D], the zoo itself (not stored: its artifact is)

    @property
    def out_dim(self) -> int:
        """Numbers per normalized vector: n with a projection, else D."""
        if self.basis is not None:
            return int(self.basis.shape[0])
        if self.coefficients is not None:
            return int(self.coefficients.shape[0])
        return int(self.mean.shape[0])

    @property
    def implicit(self) -> bool:
        """Whether the projection is kept as coefficients over the zoo (needs ``zoo``)."""
        return self.coefficients is not None

    def arrays(self) -> dict:
        """The statistics as a dict of arrays (what the autoencoder artifact stores; an
        implicit basis's zoo is left out: the zoo artifact holds it)."""
        return {k: v for k, v in self._asdict().items() if v is not None and k != "zoo"}


def zoo_principal_basis(y: np.ndarray, components: int) -> tuple[np.ndarray, ...]:
    """(center f32[D], basis f32[n, D] orthonormal, scale f32[]) of the top ``components``
    principal directions of ``y`` f32[K, D], from the K x K Gram matrix (K << D)."""
    y = np.asarray(y, np.float64)
    center = y.mean(0)
    yc = y - center
    lam, u = implicit_basis.top_eigen(yc @ yc.T, components)
    basis = (u.T @ yc) / np.sqrt(lam)[:, None]            # [n, D], orthonormal rows
    scale = np.sqrt(lam.sum() / (len(y) * len(lam)))      # RMS of the coordinates
    return center.astype(np.float32), basis.astype(np.float32), np.float32(scale)


def fit_normalizer(vectors, segments=None, *, mode: str = "coordinate",
                   std_floor: float = 1e-4, abs_floor: float = 1e-8,
                   components: int = 0, basis: str = "dense") -> Normalizer:
    """Fit the normalization of a zoo ``f32[K, D]``.

    ``segments``: optional sizes of the tensors that make up each vector
    (summing to D), used by ``tensor`` mode and by the std floor. ``components``:
    0, or the number of principal directions to project onto; ``basis``: 'dense' or
    'implicit', how that projection is kept (see the module doc). 'implicit' also fits
    the statistics a block of columns at a time, and attaches ``vectors`` (as float32)
    to the normalizer.
    """
    if basis not in BASES:
        raise ValueError(f"normalization basis must be one of {BASES}, got {basis!r}")
    streamed = basis == "implicit"
    block = None
    if streamed:
        vectors = np.asarray(vectors, np.float32)
        block = implicit_basis.block_columns(*vectors.shape) if vectors.ndim == 2 else None
    norm = _fit_affine(vectors, segments, mode=mode, std_floor=std_floor, abs_floor=abs_floor,
                       block=block)
    if components <= 0:
        return norm
    if streamed:
        center, coefficients, scale = implicit_basis.fit_coefficients(
            vectors, norm.mean, norm.std, components)
        return norm._replace(center=center, coefficients=coefficients, scale=scale,
                             zoo=vectors)
    center, basis, scale = zoo_principal_basis(normalize(norm, np.asarray(vectors)), components)
    return norm._replace(center=center, basis=basis, scale=scale)


def _fit_affine(vectors, segments, *, mode: str, std_floor: float,
                abs_floor: float, block: int | None = None) -> Normalizer:
    """The per-coordinate or per-tensor statistics, from column sums taken ``block``
    columns at a time (None: all at once). Every sum is over the zoo axis of one column,
    so the block size changes no bit of the result, only the float64 copy's size."""
    if mode not in MODES:
        raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"expected a zoo f32[K, D], got shape {vectors.shape}")
    K, D = vectors.shape
    if mode == "none":
        return Normalizer(np.zeros(D, np.float32), np.ones(D, np.float32))
    seg = segment_ids(segments, D)
    n_seg = int(seg.max()) + 1
    counts = np.bincount(seg, minlength=n_seg) * K
    blocks = [slice(None)] if block is None else implicit_basis.column_blocks(D, block)
    squares, sums, mean, std = (np.empty(D) for _ in range(4))
    for s in blocks:
        x = np.asarray(vectors[:, s], np.float64)
        squares[s] = (x ** 2).sum(0)
        if mode == "coordinate":
            mean[s], std[s] = x.mean(0), x.std(0)
        else:
            sums[s] = x.sum(0)
        del x
    # RMS of each tensor over the whole zoo: the scale the floor is relative to.
    seg_rms = np.sqrt(np.bincount(seg, weights=squares, minlength=n_seg) / counts)
    floor = np.maximum(std_floor * seg_rms, abs_floor)[seg]  # [D]
    if mode == "tensor":
        seg_mean = np.bincount(seg, weights=sums, minlength=n_seg) / counts
        centred = np.empty(D)
        for s in blocks:
            centred[s] = ((np.asarray(vectors[:, s], np.float64) - seg_mean[seg[s]]) ** 2).sum(0)
        seg_std = np.sqrt(np.bincount(seg, weights=centred, minlength=n_seg) / counts)
        mean, std = seg_mean[seg], seg_std[seg]
    std = np.maximum(std, floor)
    return Normalizer(mean.astype(np.float32), std.astype(np.float32))


def normalize(norm: Normalizer, x):
    """``f32[n, D]`` parameters -> normalized coordinates ``f32[n, norm.out_dim]``
    (works on numpy or jax arrays)."""
    if norm.implicit:
        return implicit_basis.project(x, norm.mean, norm.std, norm.center, norm.coefficients,
                                      norm.scale, _zoo_of(norm))
    y = (x - norm.mean) / norm.std
    if norm.basis is None:
        return y
    return ((y - norm.center) @ norm.basis.T) / norm.scale


def denormalize(norm: Normalizer, y):
    """Inverse of :func:`normalize` (with a projection: exact within the zoo's span)."""
    if norm.implicit:
        return implicit_basis.reconstruct(y, norm.mean, norm.std, norm.center,
                                          norm.coefficients, norm.scale, _zoo_of(norm))
    if norm.basis is not None:
        y = (y * norm.scale) @ norm.basis + norm.center
    return y * norm.std + norm.mean


def _zoo_of(norm: Normalizer):
    if norm.zoo is None:
        raise ValueError("this normalizer keeps its principal basis implicit (basis="
                         "'implicit'): attach the zoo it was fitted on "
                         "(normalizer_from_arrays(arrays, zoo=...))")
    return norm.zoo


def normalizer_from_arrays(arrays: dict, zoo=None) -> Normalizer:
    """The ``Normalizer`` stored by :meth:`Normalizer.arrays`; ``zoo`` f32[K, D] (the zoo
    it was fitted on) is needed when its basis is implicit, and ignored otherwise."""
    norm = Normalizer(**{k: np.asarray(v) for k, v in arrays.items()})
    if not norm.implicit or zoo is None:
        return norm
    zoo = np.asarray(zoo, np.float32)
    expected = (norm.coefficients.shape[1], norm.mean.shape[0])
    if zoo.shape != expected:
        raise ValueError(f"the normalizer was fitted on a zoo f32{list(expected)}, "
                         f"got one of shape {list(zoo.shape)}")
    return norm._replace(zoo=zoo)
