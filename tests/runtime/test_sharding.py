"""Device meshes (pdiff_jax.runtime.sharding): 8 virtual CPU devices give the same
results as one device.

The device count is fixed when JAX starts, so the comparisons run the worker of
tests/runtime/conftest.py in subprocesses with different ``XLA_FLAGS``.
``test_distributed.py`` runs the same worker in two processes joined by
``jax.distributed``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pdiff_jax.runtime import sharding


@pytest.fixture(scope="module")
def one_and_eight(tmp_path_factory, worker_data, mesh_worker):
    """The worker on 1 and on 8 virtual devices, run side by side."""
    root = tmp_path_factory.mktemp("mesh")
    runs = {n: root / f"devices{n}" for n in (1, 8)}
    procs = [mesh_worker.start(out, worker_data, mesh_worker.env(n)) for n, out in runs.items()]
    for out, p in zip(runs.values(), procs, strict=True):
        mesh_worker.finish([p], out)
    return {n: mesh_worker.load(out) for n, out in runs.items()}


@pytest.mark.slow
def test_worker_saw_the_devices(one_and_eight):
    assert one_and_eight[1][1]["devices"] == 1
    assert one_and_eight[8][1]["devices"] == 8
    # Virtual CPU devices of one process: the generator trains on one of them.
    assert one_and_eight[8][1]["generator_devices"] == 1
    for n in (1, 8):
        assert one_and_eight[n][1]["errors"] == {}, one_and_eight[n][1]["errors"]


@pytest.mark.slow
def test_eight_devices_match_one(one_and_eight, workload, mesh_worker):
    (a, _), (b, _) = one_and_eight[1], one_and_eight[8]
    mesh_worker.assert_same(workload, a, b)


@pytest.mark.slow
def test_results_are_not_trivial(one_and_eight):
    a, _ = one_and_eight[8]
    np.testing.assert_array_equal(a["base/resumed"], a["base/variables"])
    snaps = a["subset/snapshots"]
    assert np.all(np.isfinite(snaps))
    assert np.all(np.linalg.norm(np.diff(snaps, axis=0), axis=1) > 0)
    # Eight seeds give eight different networks.
    assert len({a[f"seed/model{i}"][:5].tobytes() for i in range(8)}) == 8
    assert 0 < a["evaluate/accuracy"].mean() <= 100


def test_mesh_and_helpers_on_one_device():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == (sharding.DATA_AXIS,)
    assert mesh.devices.size == jax.device_count()
    x = np.arange(10.0)
    padded, n = sharding.pad_to_devices(x, mesh)
    assert n == 10 and len(padded) % mesh.devices.size == 0
    assert sharding.round_batch(7, mesh) >= mesh.devices.size
    tree = {"a": np.ones((4, 2)), "b": np.arange(4)}
    placed = sharding.shard_batch(tree, mesh)
    back = sharding.to_host(placed)
    assert isinstance(back["a"], np.ndarray)
    np.testing.assert_array_equal(back["b"], np.arange(4))
    np.testing.assert_array_equal(sharding.to_host(sharding.replicate(tree, mesh))["a"],
                                  tree["a"])
