"""The zoo's principal basis kept implicit: coefficients over the zoo, never f32[n, D].

``normalization.components = n`` projects the normalized zoo onto its top n principal
directions (normalize.py). Stored as orthonormal rows f32[n, D], that basis is as
large as the zoo itself at n ~ K (K = 200 ResNet-18s of 11M parameters: 8.8 GB beside
the zoo's 8.8 GB, in host memory and in the autoencoder artifact), and fitting it held
several float64 copies of the zoo. But every direction is a combination of the centred,
normalized members:

    basis[i] = coefficients[i] @ Yc,    Yc = (zoo - mean) / std - center     f32[K, D]

so ``normalization.basis = 'implicit'`` keeps ``coefficients f32[n, K]`` and rebuilds
Yc from the zoo, a block of columns at a time, whenever the basis is applied (as
evaluation/frontier.py's ``principal_basis`` does for its PCA family). Memory beyond
the zoo: K x K numbers and one block of K x ``block`` columns; arithmetic: that of the
dense basis (m x K x D per call) plus rebuilding Yc (K x D). The sums run in another
order than the dense basis's, so results differ from it in float rounding: an option,
off by default ('dense'), turned on by the configs whose zoos are large
(configs/resnet18_whole.py).

Every function takes plain arrays (no ``Normalizer``: normalize.py imports this module).
On numpy arrays it works block by block; on JAX arrays (inside a jitted loss, e.g. the
behavioural term) it runs as one block.
"""

from __future__ import annotations

import numpy as np

# Columns per block: the block of Yc, f32[K, block], is about this many bytes.
BLOCK_BYTES = 64 * 2**20


def block_columns(K: int, D: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Columns per block so that f32[K, block] takes about ``block_bytes`` (at most D)."""
    return int(max(1, min(D, block_bytes // (4 * max(K, 1)))))


def column_blocks(D: int, block: int) -> list[slice]:
    """Consecutive column slices of ``block`` columns covering ``range(D)``."""
    return [slice(i, min(i + block, D)) for i in range(0, D, max(int(block), 1))]


def centred_block(zoo, mean, std, center, s: slice):
    """f32[K, b]: columns ``s`` of Yc = (zoo - mean) / std - center (as normalize() computes
    the normalized zoo, in float32)."""
    return (zoo[:, s] - mean[s]) / std[s] - center[s]


def top_eigen(gram: np.ndarray, components: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues f64[n], eigenvectors f64[K, n])`` of a centred zoo's K x K Gram
    matrix, largest first, at most ``components`` (None: all), without the null
    directions (the centred zoo has rank <= K - 1)."""
    eigvals, eigvecs = np.linalg.eigh(gram)               # ascending
    keep = eigvals > eigvals.max() * 1e-10
    order = np.argsort(eigvals)[::-1]
    order = order[keep[order]][:components]
    return eigvals[order], eigvecs[:, order]


def fit_coefficients(zoo: np.ndarray, mean: np.ndarray, std: np.ndarray, components: int,
                     block: int | None = None) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """(center f32[D], coefficients f32[n, K], scale f32[]) of the top ``components``
    principal directions of the normalized zoo ``(zoo - mean) / std``, direction i being
    ``coefficients[i] @ Yc``: orthonormal rows, the same span, order and scale as
    ``normalize.zoo_principal_basis`` (up to float rounding and the sign of each row).

    Two passes over the zoo's columns: the normalized zoo's mean (``center``), then the
    K x K Gram matrix of Yc in float64; never more than one block of columns at a time.
    """
    zoo = np.asarray(zoo, np.float32)
    K, D = zoo.shape
    blocks = column_blocks(D, block or block_columns(K, D))
    center = np.empty(D, np.float32)
    for s in blocks:
        center[s] = ((zoo[:, s] - mean[s]) / std[s]).astype(np.float64).mean(0)
    gram = np.zeros((K, K))
    for s in blocks:   # the Gram matrix of exactly the Yc that apply() rebuilds
        yc = centred_block(zoo, mean, std, center, s).astype(np.float64)
        gram += yc @ yc.T
    lam, u = top_eigen(gram, components)
    coefficients = (u / np.sqrt(lam)).T                   # [n, K]: rows of u.T / sqrt(lam)
    scale = np.sqrt(lam.sum() / (K * len(lam)))           # RMS of the coordinates
    return center, coefficients.astype(np.float32), np.float32(scale)


def _is_numpy(*arrays) -> bool:
    return all(isinstance(a, np.ndarray) for a in arrays)


def project(x, mean, std, center, coefficients, scale, zoo, block: int | None = None):
    """Parameters ``f32[m, D]`` -> principal coordinates ``f32[m, n]``:
    ``(((x - mean) / std - center) @ basis.T) / scale`` with basis = coefficients @ Yc."""
    if not _is_numpy(x, zoo):
        yc = (zoo - mean) / std - center
        y = (x - mean) / std - center
        return ((y @ yc.T) @ coefficients.T.astype(y.dtype)) / scale
    x = np.asarray(x, np.float32)
    K, D = zoo.shape
    g = np.zeros((len(x), K))                             # [m, K]: y @ Yc.T
    for s in column_blocks(D, block or block_columns(max(K, len(x)), D)):
        y = (x[:, s] - mean[s]) / std[s] - center[s]
        g += y @ centred_block(zoo, mean, std, center, s).T
    return ((g @ coefficients.T.astype(np.float64)) / scale).astype(np.float32)


def reconstruct(coords, mean, std, center, coefficients, scale, zoo, block: int | None = None):
    """Principal coordinates ``f32[m, n]`` -> parameters ``f32[m, D]``: the inverse of
    :func:`project`, exact within the zoo's span."""
    if not _is_numpy(coords, zoo):
        w = (coords * scale) @ coefficients.astype(coords.dtype)          # [m, K]
        yc = (zoo - mean) / std - center
        return (w @ yc + center) * std + mean
    coords = np.asarray(coords, np.float32)
    w = ((coords.astype(np.float64) * scale) @ coefficients).astype(np.float32)   # [m, K]
    K, D = zoo.shape
    out = np.empty((len(coords), D), np.float32)
    for s in column_blocks(D, block or block_columns(max(K, len(coords)), D)):
        out[:, s] = (w @ centred_block(zoo, mean, std, center, s) + center[s]) * std[s] + mean[s]
    return out


def dense_basis(center, coefficients, mean, std, zoo) -> np.ndarray:
    """f32[n, D]: the basis the coefficients stand for, built (tests and small zoos only)."""
    zoo = np.asarray(zoo, np.float32)
    return coefficients @ centred_block(zoo, mean, std, center, slice(None))


__all__ = ["block_columns", "column_blocks", "dense_basis", "fit_coefficients", "project",
           "reconstruct"]
