"""The mesh worker that tests/runtime/test_sharding.py and test_distributed.py share.

The device count is fixed when JAX starts, so the comparisons run this file as a
worker script in subprocesses (``python tests/runtime/conftest.py OUT_DIR DATA_DIR``)
with different ``XLA_FLAGS``, or in two processes joined by ``jax.distributed``. The
worker runs each of ``WORKLOADS`` and saves what it computed; the tests compare runs.
A test that takes a ``workload`` argument runs once per workload.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
import types
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
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
    from pdiff_jax.zoo.stacked_training import train_networks_stacked

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
        # 8 MLPs on one step, both ways a seed zoo stacks them (zoo.stack): vmapped, and
        # unrolled under shard_map. Either way the model axis is split over the devices.
        seeds, data = list(range(8)), (ds.x_train, ds.y_train)
        models = training.train_classifiers_batched(mlp, seeds, *data, epochs=1, batch_size=64,
                                                    mesh=mesh, **sgd)
        unrolled = train_networks_stacked(mlp, seeds, *data, epochs=1, batch_size=64, mesh=mesh,
                                          **sgd)
        return ({f"model{i}": _flat(v) for i, v in enumerate(models)}
                | {f"unrolled{i}": _flat(v) for i, v in enumerate(unrolled)})

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


# ----------------------------------------------------------------------------- the tests' side


def _env(devices: int, **extra: str) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def _start(out_dir: Path, data_dir: Path, env: dict) -> subprocess.Popen:
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / f"log_{env.get('PDIFF_PROCESS_ID', '0')}.txt", "w")
    return subprocess.Popen([sys.executable, __file__, str(out_dir), str(data_dir)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _finish(procs: list[subprocess.Popen], out_dir: Path, timeout: float = 1200) -> None:
    # The timeout catches a hang (e.g. a collective waiting for a process that died),
    # not a slow machine: on a loaded one the workers take minutes.
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(out_dir.glob("log_*.txt")))
    assert all(p.returncode == 0 for p in procs), f"worker failed:\n{logs}"


def _load(out_dir: Path, pid: int = 0) -> tuple[dict, dict]:
    arrays = dict(np.load(out_dir / f"result_{pid}.npz"))
    report = json.loads((out_dir / f"result_{pid}.json").read_text())
    return arrays, report


def _assert_same(name: str, a: dict, b: dict) -> None:
    """Same results up to float rounding.

    Summation order differs with the device count (an all-reduce adds partial
    sums). Measured, 8 vs 1 devices: ~2e-4 of the norm after 8 Adam steps of
    the BatchNorm net (Adam's g / sqrt(v) magnifies rounding in near-zero
    gradients), ~1e-8 for SGD. A real sharding error, such as BatchNorm
    statistics over one device's share of the batch, is orders larger.
    """
    # Adam's g / sqrt(v) amplifies rounding most; XLA rounds differently on another CPU
    # (an Intel machine has shown 15x an AMD one's difference): 25x the measured 2e-4.
    rel = 5e-3 if name == "base" else 1e-5
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


def pytest_generate_tests(metafunc):
    if "workload" in metafunc.fixturenames:
        metafunc.parametrize("workload", WORKLOADS)


@pytest.fixture(scope="session")
def worker_data(tfds_dir):
    """The data dir the workers read, with the bundled MNIST built once here: workers
    started together would race to build it."""
    from pdiff_jax.data import load_dataset

    load_dataset("mnist", data_dir=str(tfds_dir), max_train=16, max_test=16)
    return tfds_dir


@pytest.fixture(scope="session")
def mesh_worker():
    """The worker script, from the tests' side:

    * ``env(devices, **extra)``: its environment, on ``devices`` virtual CPU devices;
    * ``start(out_dir, data_dir, env) -> Popen``, logging to ``out_dir``;
    * ``finish(procs, out_dir)``: wait for them, fail with their logs if one failed;
    * ``load(out_dir, pid=0) -> (arrays, report)``: what process ``pid`` saved;
    * ``assert_same(workload, a, b)``: two runs' arrays agree up to float rounding.
    """
    return types.SimpleNamespace(env=_env, start=_start, finish=_finish, load=_load,
                                 assert_same=_assert_same)


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
