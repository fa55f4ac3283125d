"""Memorization baselines: cheap ways to make "new" parameter vectors from the zoo.

Zeng et al. (2025) found that p-diff's samples sit next to its training checkpoints
and that trivial operations on the zoo match it on accuracy and novelty. These
functions produce those comparison groups, each a f32[n, D] array of flat parameter
vectors to be evaluated exactly like the generated ones:

  noise_<a>    a random zoo member plus Gaussian noise of `a` times each tensor's scale
               (the paper's "noise-added" models, amplitudes 0.01 to 0.1);
  average_<k>  the average of k distinct random zoo members;
  gaussian     a sample of a per-coordinate Gaussian fitted to the zoo;
  ensemble     the uniform average of all K zoo members (the paper's "ensemble").

All functions accept numpy or JAX arrays, are deterministic given a `jax.random`
key, and return JAX float32 arrays.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.params.subset import segment_ids


def _as_zoo(zoo) -> jax.Array:
    z = jnp.asarray(zoo, dtype=jnp.float32)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"zoo must be f32[K, D] with K >= 1, got shape {z.shape}")
    return z


# Columns per float64 block: the per-coordinate statistics below are exact in float64,
# but a whole float64 copy of an 11M-parameter zoo of 200 is 17.6 GB; a block is 100 MB.
COLUMN_BLOCK = 1 << 16


def column_stats(zoo, fn) -> np.ndarray:
    """``fn`` (a reduction over members, axis 0) of the zoo in float64, one block of
    columns at a time. Bit-identical to ``fn`` of a whole float64 copy: each column's
    reduction runs over the same members in the same order."""
    d = zoo.shape[1]
    return np.concatenate([fn(np.asarray(zoo[:, i:i + COLUMN_BLOCK], dtype=np.float64))
                           for i in range(0, d, COLUMN_BLOCK)], axis=-1)


def tensor_scales(zoo, segments: Sequence[int] | None = None) -> np.ndarray:
    """f32[len(segments)]: the scale of each tensor, the RMS of its values in the zoo.

    scale_s = sqrt(mean over members k and coordinates j in tensor s of zoo[k, j]^2).
    The RMS over all members, rather than the RMS of the zoo mean, is used because the
    mean of independently seeded networks (entire-network mode) shrinks towards zero
    (their hidden units are not aligned), which would under-scale the noise; for a zoo
    of snapshots of one run (the default BN subset) the two are nearly equal.
    A tensor that is zero in every member has scale 0 and receives no noise.
    """
    ids = segment_ids(segments, zoo.shape[1])
    sq = np.bincount(ids, weights=column_stats(zoo, lambda z: np.mean(z * z, axis=0)))
    counts = np.bincount(ids)
    return np.sqrt(sq / counts).astype(np.float32)


def noisy_zoo(key, zoo, amplitude: float, n: int = 100,
              segments: Sequence[int] | None = None) -> jax.Array:
    """f32[n, D]: random zoo members (drawn with replacement) plus scaled Gaussian noise.

    out[i] = zoo[k_i] + amplitude * scale[tensor(j)] * eps[i, j], eps ~ N(0, 1),
    with `scale` from `tensor_scales` (per-tensor RMS of the zoo values).
    """
    z = _as_zoo(zoo)
    num, dim = z.shape
    scale = jnp.asarray(tensor_scales(z, segments))[segment_ids(segments, dim)]  # [D]
    k_pick, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_pick, (n,), 0, num)
    eps = jax.random.normal(k_noise, (n, dim), dtype=jnp.float32)
    return z[idx] + jnp.float32(amplitude) * scale[None, :] * eps


def average_of_random(key, zoo, k: int = 16, n: int = 100) -> jax.Array:
    """f32[n, D]: each row the average of k distinct zoo members chosen at random.

    Computed as a [n, K] averaging matrix times the zoo, so no [n, k, D] gather.
    """
    z = _as_zoo(zoo)
    num = z.shape[0]
    if not 1 <= k <= num:
        raise ValueError(f"k must be in [1, K={num}], got {k}")
    # The k smallest of K iid uniforms per row are k distinct members, uniformly.
    u = jax.random.uniform(key, (n, num))
    ranks = jnp.argsort(jnp.argsort(u, axis=1), axis=1)  # rank of each member per row
    weights = jnp.where(ranks < k, 1.0 / k, 0.0).astype(jnp.float32)  # [n, K]
    return jnp.matmul(weights, z, precision=jax.lax.Precision.HIGHEST)


def gaussian_fit(key, zoo, n: int = 100) -> jax.Array:
    """f32[n, D]: samples of N(mean_j, std_j^2) fitted independently per coordinate j.

    mean and std (population std, ddof=0, so K = 1 gives std 0) over the K members.
    """
    z = _as_zoo(zoo)
    mean = jnp.asarray(column_stats(z, lambda c: c.mean(axis=0)), dtype=jnp.float32)
    std = jnp.asarray(column_stats(z, lambda c: c.std(axis=0)), dtype=jnp.float32)
    eps = jax.random.normal(key, (n, z.shape[1]), dtype=jnp.float32)
    return mean[None, :] + std[None, :] * eps


def ensemble(zoo) -> jax.Array:
    """f32[1, D]: the uniform average of the K zoo vectors (the paper's "ensemble")."""
    mean = column_stats(_as_zoo(zoo), lambda c: c.mean(axis=0, keepdims=True))
    return jnp.asarray(mean, dtype=jnp.float32)


def _name_key(key, name: str):
    # Each baseline's key depends on its name only, so adding or removing one
    # baseline leaves the samples of the others unchanged.
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def baseline_names(noise_amplitudes: Sequence[float] = (0.01, 0.05, 0.1),
                   k_average: int | None = 16, gaussian: bool = True) -> list[str]:
    """The names `make_baselines` returns, in order: noise_<a>..., average_<k>, gaussian."""
    names = [f"noise_{a:g}" for a in noise_amplitudes]
    if k_average:
        names.append(f"average_{k_average}")
    if gaussian:
        names.append("gaussian")
    return names


def make_baselines(key, zoo, segments: Sequence[int] | None = None, *, n: int = 100,
                   noise_amplitudes: Sequence[float] = (0.01, 0.05, 0.1),
                   k_average: int | None = 16, gaussian: bool = True
                   ) -> dict[str, jax.Array]:
    """All memorization baselines: {name: f32[n, D]}.

    Names: 'noise_0.01', 'noise_0.05', 'noise_0.1' (one per amplitude), 'average_16'
    (k_average; None or 0 leaves it out; k is clipped to K), 'gaussian'.
    The ensemble (f32[1, D]) is separate: `ensemble(zoo)`.
    """
    z = _as_zoo(zoo)
    out: dict[str, jax.Array] = {}
    for a in noise_amplitudes:
        name = f"noise_{a:g}"
        out[name] = noisy_zoo(_name_key(key, name), z, a, n, segments)
    if k_average:
        name = f"average_{k_average}"
        out[name] = average_of_random(_name_key(key, name), z, min(k_average, z.shape[0]), n)
    if gaussian:
        out["gaussian"] = gaussian_fit(_name_key(key, "gaussian"), z, n)
    return out


# The default baseline names, in the order `make_baselines` returns them.
BASELINES: tuple[str, ...] = tuple(baseline_names())
