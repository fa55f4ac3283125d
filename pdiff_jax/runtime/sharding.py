"""Device meshes and batch shardings (one idea: where arrays live).

Every training loop and evaluator runs on a 1-D ``data`` mesh over all devices
(``jax.sharding``, not pmap). On one CPU device the mesh is trivial and the
code path is the same as on a GPU pod. ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
gives eight virtual CPU devices for tests.

With several processes (``pdiff_jax.runtime.distributed``) the mesh spans every
process's devices. Host arrays given to :func:`shard_batch` / :func:`replicate`
must then be the same on every process; each process copies only the rows its
own devices hold. Results split over devices of other processes are brought
back with :func:`to_host`, not ``np.asarray``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    # Auto axis types: plain data parallelism, XLA inserts the collectives.
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading axis split across the ``data`` axis, the rest replicated."""
    return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(tree, mesh: Mesh):
    """Put every leaf of ``tree`` on ``mesh`` split along its leading axis.

    The leading axis must be divisible by the number of devices; use
    :func:`pad_to_devices` first where it may not be.
    """
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def replicate(tree, mesh: Mesh):
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def pad_to_devices(x: np.ndarray, mesh: Mesh) -> tuple[np.ndarray, int]:
    """Pad the leading axis of ``x`` to a multiple of the mesh size.

    Returns the padded array and the number of real rows, so callers can
    drop the padding from results.
    """
    n = x.shape[0]
    size = mesh.devices.size
    pad = (-n) % size
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)
    return x, n


def round_batch(batch_size: int, mesh: Mesh) -> int:
    """The largest multiple of the mesh size not above ``batch_size`` (at least one per device)."""
    size = mesh.devices.size
    return max(size, batch_size - batch_size % size)


def to_host(tree):
    """Every leaf of ``tree`` as a NumPy array holding its global value.

    ``np.asarray`` / ``jax.device_get`` cannot read an array split over devices
    of other processes; those leaves are all-gathered first (a collective:
    every process must call this for the same arrays). On one process this is
    ``jax.device_get``.
    """

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)
