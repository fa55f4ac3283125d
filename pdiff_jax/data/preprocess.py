"""Array preprocessing: balanced subsets, channels, size and normalization (NumPy, host side)."""

from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights, for RGB -> grayscale.
_LUMA = np.asarray([0.299, 0.587, 0.114], np.float32)
# Growth of at most this many pixels per axis is done by zero padding, not resizing
# (28x28 MNIST into 32x32 CIFAR-style networks, as LeNet-5 did).
MAX_PAD = 4
_RESIZE_CHUNK = 1024


def balanced_subset(
    labels: np.ndarray, n: int, *, num_classes: int, seed: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Sorted indices of ``n`` examples with (as near as possible) equal counts per class.

    Each class gets ``n // num_classes``; the remainder goes to a seeded random
    choice of classes, and any class too small to fill its quota passes the rest
    to classes that still have examples. Indices in ``exclude`` are never chosen.
    Same ``(labels, n, seed)`` in, same indices out.
    """
    labels = np.asarray(labels)
    available = np.ones(len(labels), bool)
    if exclude is not None:
        available[np.asarray(exclude, np.int64)] = False
    if n > available.sum():
        raise ValueError(f"asked for {n} examples but only {available.sum()} are available")
    rng = np.random.default_rng(seed)
    # Per class: its available indices in a seeded random order.
    pools = []
    for c in range(num_classes):
        members = np.flatnonzero(available & (labels == c))
        pools.append(members[rng.permutation(len(members))])
    quota = np.full(num_classes, n // num_classes)
    quota[rng.choice(num_classes, n % num_classes, replace=False)] += 1
    sizes = np.asarray([len(p) for p in pools])
    # Hand the quota of classes that are too small to those with spare examples.
    while np.any(quota > sizes):
        spare_needed = int(np.sum(np.maximum(quota - sizes, 0)))
        quota = np.minimum(quota, sizes)
        open_classes = np.flatnonzero(quota < sizes)
        order = open_classes[rng.permutation(len(open_classes))]
        for i in range(spare_needed):
            quota[order[i % len(order)]] += 1
    chosen = np.concatenate([p[:q] for p, q in zip(pools, quota, strict=True)])
    return np.sort(chosen.astype(np.int64))


def to_unit_float(x: np.ndarray) -> np.ndarray:
    """u8 -> f32 on [0, 1]; floating input is taken to be on [0, 1] already."""
    out = x.astype(np.float32)  # always a fresh array that callers may change in place
    if x.dtype == np.uint8:
        out /= np.float32(255.0)
    return out


def match_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    """f32[N, H, W, C] -> f32[N, H, W, channels]: gray repeated to RGB, or RGB to luma."""
    have = x.shape[-1]
    if channels is None or channels == have:
        return x
    if have == 1:
        return np.repeat(x, channels, axis=-1)
    if have == 3 and channels == 1:
        return (x @ _LUMA)[..., None].astype(np.float32)
    raise ValueError(f"cannot convert {have} channels to {channels}")


def fit_size(x: np.ndarray, image_size: int | None, *, pad_value: float = 0.0) -> np.ndarray:
    """f32[N, H, W, C] -> f32[N, S, S, C] for ``S = image_size`` (``None`` keeps the size).

    Growth by at most ``MAX_PAD`` pixels per axis zero-pads, centred; anything else
    resizes (bilinear, antialiased when shrinking).
    """
    if image_size is None:
        return x
    n, h, w, c = x.shape
    if (h, w) == (image_size, image_size):
        return x
    grow_h, grow_w = image_size - h, image_size - w
    if 0 <= grow_h <= MAX_PAD and 0 <= grow_w <= MAX_PAD:
        pad = ((0, 0), (grow_h // 2, grow_h - grow_h // 2), (grow_w // 2, grow_w - grow_w // 2))
        return np.pad(x, (*pad, (0, 0)), constant_values=pad_value)
    import jax

    cpu = jax.devices("cpu")[0]
    out = np.empty((n, image_size, image_size, c), np.float32)
    for start in range(0, n, _RESIZE_CHUNK):
        chunk = jax.device_put(x[start : start + _RESIZE_CHUNK], cpu)
        shape = (chunk.shape[0], image_size, image_size, c)
        out[start : start + _RESIZE_CHUNK] = jax.image.resize(
            chunk, shape, method="linear", antialias=True
        )
    return out


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of f32[N, H, W, C] (float64 accumulation)."""
    flat = x.reshape(-1, x.shape[-1])
    mean = flat.mean(axis=0, dtype=np.float64)
    std = np.maximum(flat.std(axis=0, dtype=np.float64), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def normalize_(x: np.ndarray, mean, std) -> np.ndarray:
    """(x - mean) / std per channel, in place on f32 ``x`` (returned).

    In place because a fresh array of a whole data set costs more than the arithmetic.
    """
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return x
