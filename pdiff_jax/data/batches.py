"""Batches for training and evaluation: seeded shuffle, augmentation, device prefetch."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import jax
import numpy as np

from pdiff_jax.config.choices import AUGMENTATIONS
from pdiff_jax.runtime import sharding

CROP_PAD = 4


def crop_flip(x: np.ndarray, rng: np.random.Generator, *, pad: int = CROP_PAD) -> np.ndarray:
    """Random ``pad``-pixel-padded crop and horizontal flip of f32[B, H, W, C] (host side)."""
    b = x.shape[0]
    dy = rng.integers(0, 2 * pad + 1, size=b)
    dx = rng.integers(0, 2 * pad + 1, size=b)
    flip = rng.random(b) < 0.5
    return apply_crop_flip(x, dy, dx, flip, pad=pad)


def apply_crop_flip(x, dy, dx, flip, *, pad: int = CROP_PAD, xp=np):
    """Crop every image of ``x: f32[B, H, W, C]`` from its zero-padded copy at offsets
    ``(dy, dx)`` (in ``[0, 2 pad]``) and mirror it where ``flip``; ``xp`` is ``numpy``
    (the host pipeline) or ``jax.numpy`` (inside a jitted step): the same arithmetic.

    The padding is zeros, which on normalized images is the mean colour.
    """
    b, h, w, _ = x.shape
    padded = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = dy[:, None] + xp.arange(h)  # [B, H]
    cols = dx[:, None] + xp.arange(w)  # [B, W]
    cols = xp.where(flip[:, None], cols[:, ::-1], cols)
    return padded[xp.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def epoch_batches(
    n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool, drop_remainder: bool
) -> list[np.ndarray]:
    """The example indices of each batch of one epoch; a function of ``(seed, epoch)``."""
    order = np.random.default_rng([seed, epoch, 0]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_remainder else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def step_batch(n: int, batch_size: int, *, seed: int, step: int) -> np.ndarray:
    """The example indices of the batch of training step ``step`` (epochs without a
    remainder); a function of ``(seed, step)``, so a loop resumed at any step sees the
    batches an uninterrupted one would."""
    epoch, pos = divmod(step * batch_size, n - n % batch_size or n)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[pos:pos + batch_size]


def _to_device(batch, mesh):
    if mesh is None:
        return jax.tree.map(jax.device_put, batch)
    if len(batch[1]) % mesh.devices.size:
        # A final partial batch that does not split evenly is replicated instead.
        return sharding.replicate(batch, mesh)
    return sharding.shard_batch(batch, mesh)


def iterate_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    mesh=None,
    shuffle: bool = True,
    drop_remainder: bool = True,
    augment: str | None = None,
    prefetch: int = 2,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Yield ``(x[B, ...], y[B])`` batches of one epoch as device arrays.

    The order and the augmentation are functions of ``(seed, epoch)`` only. With
    ``mesh`` the leading axis is split over its ``data`` axis (``batch_size`` must be a
    multiple of the mesh size). ``prefetch`` batches are put on the device ahead of
    the one being consumed (``device_put`` is asynchronous, so copies overlap compute).

    Args:
      x: f32[N, H, W, C] (or any [N, ...] array; augmentation needs images).
      y: int[N].
      augment: ``None`` or ``'crop_flip'`` (random crop with 4-pixel padding and
        horizontal flip, seeded NumPy on the host).
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if (augment or "") not in AUGMENTATIONS:   # None and '' both mean none
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    if mesh is not None and batch_size % mesh.devices.size:
        raise ValueError(
            f"batch_size {batch_size} is not a multiple of the {mesh.devices.size} devices"
        )
    batches = epoch_batches(
        len(x), batch_size, seed=seed, epoch=epoch, shuffle=shuffle, drop_remainder=drop_remainder
    )
    aug_rng = np.random.default_rng([seed, epoch, 1])

    def host_batches():
        for idx in batches:
            xb = x[idx]
            if augment == "crop_flip":
                xb = crop_flip(xb, aug_rng)
            yield xb, y[idx]

    queue = collections.deque()
    for batch in host_batches():
        queue.append(_to_device(batch, mesh))
        if len(queue) > prefetch:
            yield queue.popleft()
    while queue:
        yield queue.popleft()
