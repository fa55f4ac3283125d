"""Device meshes: 8 virtual CPU devices give the same results as one device.

The device count is fixed when JAX starts, so the comparisons run this file as
a worker script in subprocesses (``python tests/test_sharding.py OUT_DIR``)
with different ``XLA_FLAGS``. ``tests/test_distributed.py`` runs the same
worker in two processes joined by ``jax.distributed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import jax
import numpy as np
import pytest

from pdiff_jax.runtime import sharding

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PDIFF_TEST_JAX_CACHE", ROOT / ".pytest_cache" / "jax"))
# The workloads of the worker, in the order it runs them.
WORKLOADS = ("base", "subset", "seed", "evaluate")


# ----------------------------------------------------------------------------- worker


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])


def _workloads(data_dir: str, out_dir: str):
    """``[(name, fn)]``; each fn returns a dict of host arrays to compare."""
    from pdiff_jax.data import load_dataset
    from pdiff_jax.evaluation.evaluator import ManyModelEvaluator, compute_tail_inputs
    from pdiff_jax.models import get_model
    from pdiff_jax.params.subset import ParamSpec, flatten_subset
    from pdiff_jax.runtime.sharding import make_mesh
    from pdiff_jax.zoo import training

    mesh = make_mesh()
    ds = load_dataset("mnist", data_dir=data_dir, max_train=512, max_test=96)
    shape = ds.x_train.shape[1:]
    cnn = get_model("cnn_bn", num_classes=10, input_shape=shape)
    mlp = get_model("mlp3", num_classes=10, input_shape=shape)
    sgd = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4)
    adam = dict(optimizer="adam", lr=3e-3)
    found = {}

    def base():
        # 8 steps of batch 64: BatchNorm statistics over a batch split across devices.
        variables = found["init"] = jax.device_get(cnn.init(jax.random.key(0)))
        kwargs = dict(epochs=1, batch_size=64, seed=0, mesh=mesh,
                      checkpoint_dir=Path(out_dir) / "ckpt_base", **adam)
        trained = training.train_classifier(cnn, variables, ds.x_train, ds.y_train, **kwargs)
        # A second call finds the finished epoch in the (Orbax, multi-host) checkpoint.
        resumed = training.train_classifier(cnn, variables, ds.x_train, ds.y_train, **kwargs)
        return {"variables": _flat(trained), "resumed": _flat(resumed)}

    def subset():
        # From the initial variables, not the base: each workload compares on its own.
        variables = found["init"]
        spec = ParamSpec.from_variables(variables, cnn)
        split = cnn.split_point_for(spec.names)
        tail = compute_tail_inputs(cnn, variables, ds.x_train, split, batch_size=128, mesh=mesh)
        snaps = training.train_subset_snapshots(cnn, variables, spec, split, tail, ds.y_train,
                                                num_snapshots=8, save_every=2, optimizer="sgd",
                                                lr=0.2, batch_size=64, seed=1, mesh=mesh)
        return {"tail": _flat(tail), "snapshots": snaps}

    def seed():
        # 8 MLPs on one vmapped step; the model axis is split over the devices.
        models = training.train_classifiers_batched(mlp, list(range(8)), ds.x_train, ds.y_train,
                                                    epochs=1, batch_size=64, mesh=mesh, **sgd)
        return {f"model{i}": _flat(v) for i, v in enumerate(models)}

    def evaluate():
        # 8 seeded perturbations of the initial subset: varied predictions, no training needed.
        spec = ParamSpec.from_variables(found["init"], cnn)
        vec = flatten_subset(found["init"], spec)
        vectors = vec + np.random.default_rng(0).normal(0, 0.5, (8, spec.size)).astype(np.float32)
        ev = ManyModelEvaluator(cnn, found["init"], spec, {"test": (ds.x_test, ds.y_test)},
                                split_point=cnn.split_point_for(spec.names), mesh=mesh,
                                batch_size=64, models_per_call=8)
        acc, wrong = ev.evaluate(vectors, "test")
        return {"accuracy": acc, "wrong": wrong}

    return [("base", base), ("subset", subset), ("seed", seed), ("evaluate", evaluate)]


def worker(out_dir: str, data_dir: str) -> None:
    """Run every workload; write ``result_<process>.npz`` and ``result_<process>.json``.

    A workload that raises is recorded (type and message) and the others still
    run, so one blocked stage does not hide the rest.
    """
    from pdiff_jax.runtime import distributed

    distributed.maybe_initialize()
    jax.config.update("jax_compilation_cache_dir", str(CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    from pdiff_jax.runtime import dispatch, sharding

    arrays, report = {}, {"devices": jax.device_count(), "processes": jax.process_count(),
                          "errors": {}, "seconds": {},
                          "generator_devices": dispatch.generator_mesh(
                              sharding.make_mesh()).devices.size}
    for name, fn in _workloads(data_dir, out_dir):
        start = time.perf_counter()
        try:
            for key, value in fn().items():
                arrays[f"{name}/{key}"] = np.asarray(value)
        except Exception as e:  # recorded for the parent test to judge
            report["errors"][name] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        report["seconds"][name] = round(time.perf_counter() - start, 2)
    pid = jax.process_index()
    np.savez(Path(out_dir) / f"result_{pid}.npz", **arrays)
    (Path(out_dir) / f"result_{pid}.json").write_text(json.dumps(report))


def prepare_data(data_dir: Path) -> Path:
    """Build the bundled MNIST once, here: workers started together would race to build it."""
    from pdiff_jax.data import load_dataset

    load_dataset("mnist", data_dir=str(data_dir), max_train=16, max_test=16)
    return data_dir


def worker_env(devices: int, **extra: str) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def start_worker(out_dir: Path, data_dir: Path, env: dict) -> subprocess.Popen:
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / f"log_{env.get('PDIFF_PROCESS_ID', '0')}.txt", "w")
    return subprocess.Popen([sys.executable, __file__, str(out_dir), str(data_dir)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def finish(procs: list[subprocess.Popen], out_dir: Path, timeout: float = 240) -> None:
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(out_dir.glob("log_*.txt")))
    assert all(p.returncode == 0 for p in procs), f"worker failed:\n{logs}"


def load_result(out_dir: Path, pid: int = 0) -> tuple[dict, dict]:
    arrays = dict(np.load(out_dir / f"result_{pid}.npz"))
    report = json.loads((out_dir / f"result_{pid}.json").read_text())
    return arrays, report


def assert_same(name: str, a: dict, b: dict) -> None:
    """Same results up to float rounding.

    Summation order differs with the device count (an all-reduce adds partial
    sums). Measured, 8 vs 1 devices: ~2e-4 of the norm after 8 Adam steps of
    the BatchNorm net (Adam's g / sqrt(v) magnifies rounding in near-zero
    gradients), ~1e-8 for SGD. A real sharding error, such as BatchNorm
    statistics over one device's share of the batch, is orders larger.
    """
    rel = 1e-3 if name == "base" else 1e-5   # Adam's g / sqrt(v) amplifies rounding most
    keys = sorted(k for k in a if k.startswith(name + "/"))
    assert keys, f"no results for {name}"
    assert keys == sorted(k for k in b if k.startswith(name + "/"))
    for k in keys:
        if a[k].dtype == bool:
            # Predictions: an example sitting on a decision boundary may flip.
            assert np.mean(a[k] != b[k]) <= 0.01, k
        else:
            assert a[k].shape == b[k].shape, k
            err = np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-30)
            assert err <= rel, f"{k}: relative difference {err:.2e} > {rel:.0e}"


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def one_and_eight(tmp_path_factory, tfds_dir):
    """The worker on 1 and on 8 virtual devices, run side by side."""
    root = tmp_path_factory.mktemp("mesh")
    data_dir = prepare_data(tfds_dir)
    runs = {n: root / f"devices{n}" for n in (1, 8)}
    procs = [start_worker(out, data_dir, worker_env(n)) for n, out in runs.items()]
    for out, p in zip(runs.values(), procs, strict=True):
        finish([p], out)
    return {n: load_result(out) for n, out in runs.items()}


@pytest.mark.slow
def test_worker_saw_the_devices(one_and_eight):
    assert one_and_eight[1][1]["devices"] == 1
    assert one_and_eight[8][1]["devices"] == 8
    # Virtual CPU devices of one process: the generator trains on one of them.
    assert one_and_eight[8][1]["generator_devices"] == 1
    for n in (1, 8):
        assert one_and_eight[n][1]["errors"] == {}, one_and_eight[n][1]["errors"]


@pytest.mark.slow
@pytest.mark.parametrize("name", WORKLOADS)
def test_eight_devices_match_one(one_and_eight, name):
    (a, _), (b, _) = one_and_eight[1], one_and_eight[8]
    assert_same(name, a, b)


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


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
