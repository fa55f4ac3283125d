"""Several processes: environment parsing, and 2 CPU processes on localhost matching 1.

JAX 0.10.2's CPU backend does cross-process collectives with gloo
(``jax_cpu_collectives_implementation``, set by ``maybe_initialize``), so two
processes with one virtual device each form one 2-device mesh. The workloads
are those of ``tests/test_sharding.py`` (its worker runs here too).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import jax
import pytest

from pdiff_jax.runtime import distributed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sharding import (
    WORKLOADS,
    assert_same,
    finish,
    load_result,
    prepare_data,
    start_worker,
    worker_env,
)

# What reading a result split over another process's devices raises in the
# code paths that still call np.asarray / jax.device_get on it (see launch/README.md).
HOST_FETCH_ERROR = "spans non-addressable"

# ----------------------------------------------------------------------------- environment


def test_one_process_needs_nothing():
    assert distributed.cluster_from_env({}) is None
    assert distributed.cluster_from_env({"PDIFF_NUM_PROCESSES": "1"}) is None
    # One SLURM task is one process too.
    slurm = {v: "0" for v in distributed._SLURM_VARS} | {"SLURM_NTASKS": "1"}
    assert distributed.cluster_from_env(slurm) is None


def test_local_launcher_variables():
    spec = distributed.cluster_from_env({"PDIFF_NUM_PROCESSES": "4", "PDIFF_PROCESS_ID": "3",
                                         "PDIFF_COORDINATOR": "10.0.0.1:1234",
                                         "PDIFF_LOCAL_DEVICE_IDS": "2,3"})
    assert spec.source == "pdiff"
    assert spec.initialize_kwargs() == dict(coordinator_address="10.0.0.1:1234",
                                            num_processes=4, process_id=3,
                                            local_device_ids=[2, 3])


@pytest.mark.parametrize("env, match", [
    ({"PDIFF_NUM_PROCESSES": "2", "PDIFF_COORDINATOR": "h:1"}, "PDIFF_PROCESS_ID is not set"),
    ({"PDIFF_NUM_PROCESSES": "2", "PDIFF_PROCESS_ID": "2", "PDIFF_COORDINATOR": "h:1"},
     "outside"),
    ({"PDIFF_NUM_PROCESSES": "2", "PDIFF_PROCESS_ID": "0"}, "host:port"),
    ({"PDIFF_NUM_PROCESSES": "two"}, "not an integer"),
    ({"PDIFF_NUM_PROCESSES": "0"}, "at least 1"),
])
def test_bad_launcher_variables_say_what_is_wrong(env, match):
    with pytest.raises(ValueError, match=match):
        distributed.cluster_from_env(env)


def test_slurm_and_auto_detection_leave_the_details_to_jax():
    slurm = {v: "0" for v in distributed._SLURM_VARS} | {"SLURM_NTASKS": "8"}
    assert distributed.cluster_from_env(slurm).source == "slurm"
    assert distributed.cluster_from_env(slurm).initialize_kwargs() == {}
    assert distributed.cluster_from_env({"PDIFF_DISTRIBUTED": "auto"}).source == "auto"
    # Our own variables win over SLURM's (local.sh inside an allocation).
    env = slurm | {"PDIFF_NUM_PROCESSES": "2", "PDIFF_PROCESS_ID": "1",
                   "PDIFF_COORDINATOR": "localhost:1"}
    assert distributed.cluster_from_env(env).source == "pdiff"


def test_single_process_is_left_alone():
    assert distributed.maybe_initialize({}) is False
    assert jax.process_count() == 1
    assert distributed.is_writer()
    distributed.barrier("nothing to wait for")


# ----------------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_and_two_processes(tmp_path_factory, tfds_dir):
    """The worker in 1 process, and in 2 processes joined by jax.distributed, side by side."""
    root = tmp_path_factory.mktemp("processes")
    data_dir = prepare_data(tfds_dir)
    single = start_worker(root / "one", data_dir, worker_env(1))
    coordinator = f"localhost:{_free_port()}"
    pair = [start_worker(root / "two", data_dir, worker_env(
        1, PDIFF_COORDINATOR=coordinator, PDIFF_NUM_PROCESSES="2", PDIFF_PROCESS_ID=str(i)))
        for i in range(2)]
    finish([single], root / "one")
    finish(pair, root / "two")
    return load_result(root / "one"), [load_result(root / "two", pid) for pid in range(2)]


@pytest.mark.slow
def test_two_processes_form_one_mesh(one_and_two_processes):
    _, pair = one_and_two_processes
    for _, report in pair:
        assert report["processes"] == 2
        assert report["devices"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", WORKLOADS)
def test_two_processes_match_one(one_and_two_processes, name):
    (a, report_one), pair = one_and_two_processes
    assert name not in report_one["errors"], report_one["errors"][name]
    for b, report in pair:
        error = report["errors"].get(name, "")
        if HOST_FETCH_ERROR in error:
            pytest.xfail(f"{name}: reads a result split across processes with np.asarray/"
                         "jax.device_get; needs sharding.to_host (patch in launch/README.md)")
        assert not error, error
        assert_same(name, a, b)


@pytest.mark.slow
def test_checkpoint_resumes_across_processes(one_and_two_processes):
    _, pair = one_and_two_processes
    for b, report in pair:
        assert "base" not in report["errors"], report["errors"]["base"]
        assert (b["base/resumed"] == b["base/variables"]).all()


# ----------------------------------------------------------------------------- launch/


def _load_sweep_module():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "launch" / "sweep.py"
    spec = importlib.util.spec_from_file_location("launch_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config", ["configs/default.py", "configs/resnet18.py:cifar10"])
def test_sweep_expands_the_paper_ablations(config):
    sweep = _load_sweep_module()
    root = Path(__file__).resolve().parent.parent
    _, _, runs = sweep.load_sweep(str(root / config))
    assert {f"k{k}" for k in (1, 10, 50, 200, 500)} <= set(runs)
    assert {"noise_none", "norm_group", "norm_batch"} <= set(runs)
    cmds = dict(sweep.commands(config, "runs/x", runs, via="launch/local.sh 2"))
    assert cmds["k10"] == ["launch/local.sh", "2", "--config", config, "--workdir", "runs/x/k10",
                           "--config.zoo.num_models=10"]
    assert "--config.generator.autoencoder.model.norm=group" in cmds["norm_group"]


def test_sweep_rejects_an_unknown_key():
    sweep = _load_sweep_module()
    from pdiff_jax.config.defaults import get_config

    with pytest.raises(ValueError, match=r"zoo\.num_modles"):
        sweep.check_overrides(get_config(), "typo", {"zoo.num_modles": 3})
    with pytest.raises(ValueError, match=r"zoo\.num_models"):
        sweep.check_overrides(get_config(), "type", {"zoo.num_models": "many"})
