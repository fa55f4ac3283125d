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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pdiff_jax.subset import segment_ids

MODES = ("coordinate", "tensor", "none")


class Normalizer(NamedTuple):
    mean: np.ndarray  # f32[D]
    std: np.ndarray  # f32[D], > 0


def fit_normalizer(vectors, segments=None, *, mode: str = "coordinate",
                   std_floor: float = 1e-4, abs_floor: float = 1e-8) -> Normalizer:
    """Fit the normalization of a zoo ``f32[K, D]``.

    ``segments``: optional sizes of the tensors that make up each vector
    (summing to D), used by ``tensor`` mode and by the std floor.
    """
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
    """``f32[n, D]`` parameters -> normalized coordinates (works on numpy or jax arrays)."""
    return (x - norm.mean) / norm.std


def denormalize(norm: Normalizer, y):
    """Inverse of :func:`normalize`."""
    return y * norm.std + norm.mean
