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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pdiff_jax.config.choices import NORMALIZATION_MODES as MODES
from pdiff_jax.params.subset import segment_ids


class Normalizer(NamedTuple):
    mean: np.ndarray  # f32[D]
    std: np.ndarray  # f32[D], > 0
    # Optional projection (``components > 0``): coords = (y - center) @ basis.T / scale.
    center: np.ndarray | None = None  # f32[D], the zoo's mean in normalized units
    basis: np.ndarray | None = None   # f32[n, D], orthonormal rows
    scale: np.ndarray | None = None   # f32[], RMS of the zoo's coordinates (they become ~1)

    @property
    def out_dim(self) -> int:
        """Numbers per normalized vector: n with a projection, else D."""
        return int(self.basis.shape[0] if self.basis is not None else self.mean.shape[0])

    def arrays(self) -> dict:
        """The statistics as a dict of arrays (what the autoencoder artifact stores)."""
        return {k: v for k, v in self._asdict().items() if v is not None}


def zoo_principal_basis(y: np.ndarray, components: int) -> tuple[np.ndarray, ...]:
    """(center f32[D], basis f32[n, D] orthonormal, scale f32[]) of the top ``components``
    principal directions of ``y`` f32[K, D], from the K x K Gram matrix (K << D)."""
    y = np.asarray(y, np.float64)
    center = y.mean(0)
    yc = y - center
    eigvals, eigvecs = np.linalg.eigh(yc @ yc.T)          # ascending
    keep = eigvals > eigvals.max() * 1e-10                # the centred zoo has rank <= K - 1
    order = np.argsort(eigvals)[::-1]
    order = order[keep[order]][:components]
    lam, u = eigvals[order], eigvecs[:, order]
    basis = (u.T @ yc) / np.sqrt(lam)[:, None]            # [n, D], orthonormal rows
    scale = np.sqrt(lam.sum() / (len(y) * len(lam)))      # RMS of the coordinates
    return center.astype(np.float32), basis.astype(np.float32), np.float32(scale)


def fit_normalizer(vectors, segments=None, *, mode: str = "coordinate",
                   std_floor: float = 1e-4, abs_floor: float = 1e-8,
                   components: int = 0) -> Normalizer:
    """Fit the normalization of a zoo ``f32[K, D]``.

    ``segments``: optional sizes of the tensors that make up each vector
    (summing to D), used by ``tensor`` mode and by the std floor. ``components``:
    0, or the number of principal directions to project onto (see the module doc).
    """
    norm = _fit_affine(vectors, segments, mode=mode, std_floor=std_floor, abs_floor=abs_floor)
    if components <= 0:
        return norm
    center, basis, scale = zoo_principal_basis(normalize(norm, np.asarray(vectors)), components)
    return norm._replace(center=center, basis=basis, scale=scale)


def _fit_affine(vectors, segments, *, mode: str, std_floor: float,
                abs_floor: float) -> Normalizer:
    if mode not in MODES:
        raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
    x = np.asarray(vectors, np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a zoo f32[K, D], got shape {x.shape}")
    K, D = x.shape
    if mode == "none":
        return Normalizer(np.zeros(D, np.float32), np.ones(D, np.float32))
    seg = segment_ids(segments, D)
    n_seg = int(seg.max()) + 1
    counts = np.bincount(seg, minlength=n_seg) * K
    # RMS of each tensor over the whole zoo: the scale the floor is relative to.
    seg_rms = np.sqrt(np.bincount(seg, weights=(x ** 2).sum(0), minlength=n_seg) / counts)
    floor = np.maximum(std_floor * seg_rms, abs_floor)[seg]  # [D]
    if mode == "coordinate":
        mean = x.mean(0)
        std = x.std(0)
    else:  # tensor
        seg_mean = np.bincount(seg, weights=x.sum(0), minlength=n_seg) / counts
        centred = ((x - seg_mean[seg]) ** 2).sum(0)
        seg_std = np.sqrt(np.bincount(seg, weights=centred, minlength=n_seg) / counts)
        mean, std = seg_mean[seg], seg_std[seg]
    std = np.maximum(std, floor)
    return Normalizer(mean.astype(np.float32), std.astype(np.float32))


def normalize(norm: Normalizer, x):
    """``f32[n, D]`` parameters -> normalized coordinates ``f32[n, norm.out_dim]``
    (works on numpy or jax arrays)."""
    y = (x - norm.mean) / norm.std
    if norm.basis is None:
        return y
    return ((y - norm.center) @ norm.basis.T) / norm.scale


def denormalize(norm: Normalizer, y):
    """Inverse of :func:`normalize` (with a projection: exact within the zoo's span)."""
    if norm.basis is not None:
        y = (y * norm.scale) @ norm.basis + norm.center
    return y * norm.std + norm.mean


def normalizer_from_arrays(arrays: dict) -> Normalizer:
    """The ``Normalizer`` stored by :meth:`Normalizer.arrays`."""
    return Normalizer(**{k: np.asarray(v) for k, v in arrays.items()})
