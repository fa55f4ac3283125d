"""Novelty of generated models: do they behave (and look) like their training data?

Behaviour: the paper's similarity of two models A and B is the IoU of their wrong
predictions on the test set,

    IoU(A, B) = |wrong(A) & wrong(B)| / |wrong(A) | wrong(B)|,

defined as 1 when neither model makes a mistake (identical behaviour). Matrices of
IoUs are computed with two matrix products (intersection counts and set sizes), so
300 x 300 models on 10,000 test examples take well under a second.

Parameters: the Euclidean distance from each generated vector to its closest zoo
vector, computed from Gram matrices in float64 on zoo-centred, D-chunked blocks
(never an [n, m, D] tensor; centring avoids cancellation when the vectors are
large but their differences small, as for snapshots of one training run).
"""

from __future__ import annotations

import numpy as np


def _as_masks(wrong) -> np.ndarray:
    w = np.asarray(wrong)
    if w.ndim != 2:
        raise ValueError(f"wrong-prediction masks must be bool[n, N], got shape {w.shape}")
    return w.astype(bool)


def iou_matrix(wrong_a, wrong_b) -> np.ndarray:
    """f32[n, m]: IoU of wrong predictions between every model of A and every model of B.

    Args:
      wrong_a: bool[n, N], True where model i of A mispredicts test example j.
      wrong_b: bool[m, N], the same test examples in the same order.
    """
    a, b = _as_masks(wrong_a), _as_masks(wrong_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"masks cover different test sets: {a.shape[1]} vs {b.shape[1]}")
    # float32 counts are exact up to 2**24 examples; beyond that use float64.
    dtype = np.float32 if a.shape[1] < 2**24 else np.float64
    af, bf = a.astype(dtype), b.astype(dtype)
    inter = af @ bf.T                                     # [n, m] |A & B|
    union = af.sum(1)[:, None] + bf.sum(1)[None, :] - inter  # [n, m] |A | B|
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return iou.astype(np.float32)


def _offdiag_mean(m: np.ndarray) -> float:
    n = m.shape[0]
    if n < 2:
        return float("nan")
    return float((m.sum(dtype=np.float64) - np.trace(m, dtype=np.float64)) / (n * (n - 1)))


def offdiag_max(m: np.ndarray) -> np.ndarray:
    """f32[n]: row-wise max of a square matrix excluding the diagonal (NaN if n < 2)."""
    if m.shape[0] < 2:
        return np.full(m.shape[0], np.nan, np.float32)
    m = m.astype(np.float64, copy=True)
    np.fill_diagonal(m, -np.inf)
    return m.max(axis=1).astype(np.float32)


def sq_distances(x, y, *, center=None, chunk: int = 8192) -> np.ndarray:
    """f64[n, m]: squared Euclidean distances between rows of x f32[n, D] and y f32[m, D].

    Accumulated over D in chunks of `chunk` columns in float64, after subtracting
    `center` f[D] (default: the mean of y), so memory is O((n + m) * chunk) and the
    result keeps precision for nearby vectors with large entries.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need x [n, D] and y [m, D], got {x.shape} and {y.shape}")
    dim = x.shape[1]
    if center is None:
        center = y.astype(np.float64).mean(axis=0) if y.shape[0] else np.zeros(dim)
    center = np.asarray(center, dtype=np.float64)
    gram = np.zeros((x.shape[0], y.shape[0]))
    nx = np.zeros(x.shape[0])
    ny = np.zeros(y.shape[0])
    for s in range(0, dim, chunk):
        xc = x[:, s:s + chunk].astype(np.float64) - center[s:s + chunk]
        yc = y[:, s:s + chunk].astype(np.float64) - center[s:s + chunk]
        gram += xc @ yc.T
        nx += np.einsum("ij,ij->i", xc, xc)
        ny += np.einsum("ij,ij->i", yc, yc)
    return np.maximum(nx[:, None] + ny[None, :] - 2.0 * gram, 0.0)


def reference_metrics(wrong_orig, vec_orig=None) -> dict:
    """How alike the K zoo models are among themselves (the reference for novelty).

    Args:
      wrong_orig: bool[K, N] wrong-prediction masks of the zoo models.
      vec_orig: optional f32[K, D] their parameter vectors.

    Returns dict: iou_orig_orig (mean off-diagonal IoU), max_iou_orig f32[K] (each zoo
    model's max IoU with another zoo model), max_iou_orig_mean; with vectors also
    nn_l2_orig f32[K] (distance to the closest other zoo vector), nn_l2_orig_mean.
    Statistics need K >= 2 (NaN otherwise).
    """
    oo = iou_matrix(wrong_orig, wrong_orig)
    max_oo = offdiag_max(oo)
    out = {
        "iou_orig_orig": _offdiag_mean(oo),
        "max_iou_orig": max_oo,
        "max_iou_orig_mean": float(np.mean(max_oo)) if max_oo.size else float("nan"),
    }
    if vec_orig is not None:
        d = np.sqrt(sq_distances(vec_orig, vec_orig))
        nn = _offdiag_min(d)
        out["nn_l2_orig"] = nn
        out["nn_l2_orig_mean"] = float(np.mean(nn)) if nn.size else float("nan")
    return out


def _offdiag_min(d: np.ndarray) -> np.ndarray:
    if d.shape[0] < 2:
        return np.full(d.shape[0], np.nan, np.float32)
    d = d.copy()
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1).astype(np.float32)


def group_metrics(wrong_orig, wrong_gen, vec_orig=None, vec_gen=None) -> dict:
    """How alike a group of n models (generated or baseline) is to the zoo and to itself.

    Args:
      wrong_orig: bool[K, N]; wrong_gen: bool[n, N] (same test examples).
      vec_orig: optional f32[K, D]; vec_gen: optional f32[n, D] parameter vectors.

    Returns dict:
      iou_gen_gen: mean off-diagonal IoU within the group (NaN if n < 2);
      iou_orig_gen: mean IoU over all (zoo, group) pairs;
      max_iou_gen f32[n]: each member's max IoU with any zoo model (nearest neighbour),
      max_iou_gen_index i32[n]: which zoo model that is; max_iou_gen_mean;
      with vectors: nn_l2_gen f32[n] (distance to the closest zoo vector),
      nn_l2_gen_index i32[n], nn_l2_gen_mean.
    """
    og = iou_matrix(wrong_orig, wrong_gen)  # [K, n]
    gg = iou_matrix(wrong_gen, wrong_gen)   # [n, n]
    out = {
        "iou_gen_gen": _offdiag_mean(gg),
        "iou_orig_gen": float(og.mean(dtype=np.float64)),
        "max_iou_gen": og.max(axis=0),
        "max_iou_gen_index": og.argmax(axis=0).astype(np.int32),
        "max_iou_gen_mean": float(og.max(axis=0).mean(dtype=np.float64)),
    }
    if vec_orig is not None and vec_gen is not None:
        d = np.sqrt(sq_distances(vec_gen, vec_orig))  # [n, K]
        out["nn_l2_gen"] = d.min(axis=1).astype(np.float32)
        out["nn_l2_gen_index"] = d.argmin(axis=1).astype(np.int32)
        out["nn_l2_gen_mean"] = float(d.min(axis=1).mean())
    return out


def novelty_metrics(wrong_orig, wrong_gen, vec_orig=None, vec_gen=None) -> dict:
    """The paper's four similarity comparisons (Fig. 3f) plus parameter-space distances.

    Args:
      wrong_orig: bool[K, N] zoo wrong-prediction masks; wrong_gen: bool[n, N] generated.
      vec_orig: f32[K, D], vec_gen: f32[n, D] optional flat parameter vectors.

    Returns the union of `reference_metrics` and `group_metrics`: scalars
    iou_orig_orig, iou_gen_gen, iou_orig_gen, max_iou_gen_mean, max_iou_orig_mean,
    nn_l2_gen_mean, nn_l2_orig_mean (the last two only with vectors), and per-model
    arrays max_iou_gen f32[n], max_iou_orig f32[K], nn_l2_gen f32[n], nn_l2_orig f32[K].
    """
    out = reference_metrics(wrong_orig, vec_orig)
    out.update(group_metrics(wrong_orig, wrong_gen, vec_orig, vec_gen))
    return out


def scalars(metrics: dict) -> dict:
    """The scalar entries of a metrics dict (drops per-model arrays), as Python floats."""
    return {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
