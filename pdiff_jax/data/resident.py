"""A training set kept on the device; batches drawn and augmented inside the jitted step.

On a GPU the host pipeline (gather a batch, augment it with NumPy, copy it)
bounded ResNet-18 training at ~16 ms per batch of 128. Here the whole set is
copied once, as ``uint8`` when the normalized floats are exactly
``(u / 255 - mean) / std`` of some bytes (4x less device memory, decoded per
batch by the same arithmetic), else as ``float32``.

The batch order is the host pipeline's (``batches.epoch_batches``: the same
``(seed, epoch)`` gives the same batches), handed over once per epoch as an
index vector; the augmentation offsets of step ``s`` are drawn from
``fold_in(key, s)`` on the device. The crop-and-flip arithmetic is
``batches.apply_crop_flip``, shared with the host pipeline.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.data import preprocess
from pdiff_jax.data.batches import CROP_PAD, apply_crop_flip
from pdiff_jax.runtime import sharding


class ResidentData(NamedTuple):
    """Training arrays on the device (a pytree: passed into jitted steps as an argument).

    ``images``: u8 or f32 [N, H, W, C]; ``labels``: i32[N]; an image is
    ``(images / 255 - mean) / std`` when ``images`` is u8, else ``images`` itself.
    """

    images: jax.Array
    labels: jax.Array
    mean: jax.Array   # f32[C]
    std: jax.Array    # f32[C]


def encode_bytes(x: np.ndarray, mean, std) -> np.ndarray | None:
    """u8 images that decode to exactly ``x`` (normalized f32[N, H, W, C]), or None.

    Resized or otherwise non-byte data has no such encoding and stays f32.
    """
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != (x.shape[-1],) or std.shape != (x.shape[-1],):
        return None
    u = np.rint((x * std + mean) * np.float32(255.0))
    if u.min() < 0 or u.max() > 255:
        return None
    u = u.astype(np.uint8)
    # Decoded by the loader's own arithmetic, the bytes must give back x exactly.
    if not np.array_equal(preprocess.normalize_(preprocess.to_unit_float(u), mean, std), x):
        return None
    return u


def decode(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Stored images (u8 or f32) -> normalized f32, inside a jitted step."""
    if images.dtype != jnp.uint8:
        return images
    return (images.astype(jnp.float32) / jnp.float32(255.0) - mean) / std


def to_device(x: np.ndarray, y: np.ndarray, *, mean=(), std=(), mesh=None) -> ResidentData:
    """Copy a normalized training set to the device(s) (replicated over ``mesh``)."""
    u = encode_bytes(x, mean, std) if len(mean) else None
    c = x.shape[-1]
    data = ResidentData(
        images=u if u is not None else np.asarray(x, np.float32),
        labels=np.asarray(y, np.int32),
        mean=np.asarray(mean if u is not None else np.zeros(c), np.float32),
        std=np.asarray(std if u is not None else np.ones(c), np.float32))
    mesh = mesh or sharding.make_mesh()
    return sharding.replicate(data, mesh)


def crop_flip_offsets(key: jax.Array, batch: int, pad: int = CROP_PAD):
    """Random crop offsets ``dy, dx: i32[B]`` in ``[0, 2 pad]`` and flips ``bool[B]``."""
    k_y, k_x, k_f = jax.random.split(key, 3)
    dy = jax.random.randint(k_y, (batch,), 0, 2 * pad + 1)
    dx = jax.random.randint(k_x, (batch,), 0, 2 * pad + 1)
    return dy, dx, jax.random.bernoulli(k_f, 0.5, (batch,))


def draw_batch(data: ResidentData, order: jax.Array, step, key: jax.Array, *,
               batch_size: int, augment: str | None):
    """Batch ``step`` of an epoch: rows ``order[step * B : (step + 1) * B]``, decoded and
    (with ``augment='crop_flip'``) cropped and flipped with offsets from ``fold_in(key, step)``.

    Returns ``(x f32[B, H, W, C], y i32[B])``.
    """
    idx = jax.lax.dynamic_slice_in_dim(order, step * batch_size, batch_size)
    x = decode(data.images[idx], data.mean, data.std)
    if augment == "crop_flip":
        dy, dx, flip = crop_flip_offsets(jax.random.fold_in(key, step), batch_size)
        x = apply_crop_flip(x, dy, dx, flip, xp=jnp)
    return x, data.labels[idx]
