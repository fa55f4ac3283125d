"""Batches (pdiff_jax.data.batches): a seeded permutation per epoch, split over a mesh,
crop-and-flip augmentation with the same arithmetic on host and device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from pdiff_jax.data import batches, iterate_batches
from pdiff_jax.data.batches import apply_crop_flip, crop_flip, step_batch
from pdiff_jax.runtime import sharding


def _ids_batches(n, batch_size, **kwargs):
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    y = np.arange(n, dtype=np.int32)
    out = list(iterate_batches(x, y, batch_size, **kwargs))
    for xb, yb in out:
        np.testing.assert_array_equal(np.asarray(xb)[:, 0, 0, 0], np.asarray(yb))
    return [np.asarray(yb) for _, yb in out]


def test_batches_are_a_seeded_permutation():
    first = _ids_batches(103, 10, seed=0, epoch=0)
    assert len(first) == 10 and all(len(b) == 10 for b in first)
    assert len(set(np.concatenate(first))) == 100  # no repeats, remainder dropped
    again = _ids_batches(103, 10, seed=0, epoch=0, prefetch=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    next_epoch = _ids_batches(103, 10, seed=0, epoch=1)
    assert not np.array_equal(np.concatenate(first), np.concatenate(next_epoch))
    other_seed = _ids_batches(103, 10, seed=1, epoch=0)
    assert not np.array_equal(np.concatenate(first), np.concatenate(other_seed))
    ordered = _ids_batches(103, 10, seed=0, shuffle=False, drop_remainder=False)
    np.testing.assert_array_equal(np.concatenate(ordered), np.arange(103))
    assert len(ordered[-1]) == 3


def test_batches_are_sharded_over_the_mesh():
    mesh = sharding.make_mesh()
    x = np.zeros((16, 4, 4, 1), np.float32)
    xb, yb = next(iterate_batches(x, np.zeros(16, np.int32), 8, seed=0, mesh=mesh))
    assert isinstance(xb, jax.Array) and xb.shape == (8, 4, 4, 1)
    assert isinstance(xb.sharding, NamedSharding) and xb.sharding.spec == P("data")
    assert yb.sharding.spec == P("data")


def test_crop_flip_is_a_padded_crop_or_its_mirror():
    rng = np.random.default_rng(0)
    x = rng.random((16, 6, 6, 2)).astype(np.float32)
    out = batches.crop_flip(x, np.random.default_rng(1), pad=2)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out, batches.crop_flip(x, np.random.default_rng(1), pad=2))
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    flips = 0
    for i in range(len(x)):
        candidates = [
            (flip, padded[i, dy : dy + 6, dx : dx + 6][:, :: -1 if flip else 1])
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
        ]
        matches = [flip for flip, c in candidates if np.array_equal(c, out[i])]
        assert matches, f"example {i} is not a crop/flip of its input"
        flips += matches[0]
    assert 0 < flips < len(x)  # both flipped and unflipped examples occur
    augmented = list(iterate_batches(x, np.zeros(16, np.int32), 8, seed=0, augment="crop_flip"))
    plain = list(iterate_batches(x, np.zeros(16, np.int32), 8, seed=0))
    assert not np.array_equal(np.asarray(augmented[0][0]), np.asarray(plain[0][0]))
    with pytest.raises(ValueError, match="augment must be one of"):
        next(iterate_batches(x, np.zeros(16, np.int32), 8, seed=0, augment="mixup"))


def test_batches_split_over_eight_devices(run_python):
    code = """
import numpy as np, jax
from pdiff_jax.runtime import sharding
from pdiff_jax.data import iterate_batches
mesh = sharding.make_mesh()
x = np.arange(19, dtype=np.float32)[:, None]
out = list(iterate_batches(x, np.arange(19), 8, seed=0, mesh=mesh, drop_remainder=False))
print(len(jax.devices()), [b[0].sharding.is_fully_replicated for b in out],
      [b[0].addressable_shards[0].data.shape[0] for b in out])
try:
    next(iterate_batches(x, np.arange(19), 6, seed=0, mesh=mesh))
except ValueError as e:
    print(e)
"""
    out = run_python(code, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    lines = out.strip().splitlines()
    # Full batches put one row on each device; the last 3 rows are replicated.
    assert lines[0] == "8 [False, False, True] [1, 1, 3]"
    assert lines[1] == "batch_size 6 is not a multiple of the 8 devices"


def test_step_batches_cover_each_epoch_once():
    seen = np.concatenate([step_batch(100, 10, seed=1, step=s) for s in range(10)])
    assert sorted(seen) == list(range(100))
    assert not np.array_equal(step_batch(100, 10, seed=1, step=10),
                              step_batch(100, 10, seed=1, step=0))


def test_crop_flip_is_the_same_arithmetic_on_host_and_device():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 3)).astype(np.float32)
    dy, dx = rng.integers(0, 9, size=6), rng.integers(0, 9, size=6)
    flip = rng.random(6) < 0.5
    host = apply_crop_flip(x, dy, dx, flip)
    device = jax.jit(lambda *a: apply_crop_flip(*a, xp=jnp))(x, dy, dx, flip)
    np.testing.assert_array_equal(host, np.asarray(device))
    # offset 4 without a flip is the identity; the host entry point draws its offsets
    np.testing.assert_array_equal(apply_crop_flip(x, dy * 0 + 4, dx * 0 + 4, flip & False), x)
    assert crop_flip(x, np.random.default_rng(1)).shape == x.shape
