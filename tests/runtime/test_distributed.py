"""Several processes (pdiff_jax.runtime.distributed): environment parsing, and 2 CPU
processes on localhost matching 1.

JAX 0.10.2's CPU backend does cross-process collectives with gloo
(``jax_cpu_collectives_implementation``, set by ``maybe_initialize``), so two
processes with one virtual device each form one 2-device mesh. The workloads
are those of ``test_sharding.py`` (the worker of tests/runtime/conftest.py).
"""

from __future__ import annotations

import socket

import jax
import pytest

from pdiff_jax.runtime import distributed

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
def one_and_two_processes(tmp_path_factory, worker_data, mesh_worker):
    """The worker in 1 process, and in 2 processes joined by jax.distributed, side by side."""
    root = tmp_path_factory.mktemp("processes")
    single = mesh_worker.start(root / "one", worker_data, mesh_worker.env(1))
    coordinator = f"localhost:{_free_port()}"
    pair = [mesh_worker.start(root / "two", worker_data, mesh_worker.env(
        1, PDIFF_COORDINATOR=coordinator, PDIFF_NUM_PROCESSES="2", PDIFF_PROCESS_ID=str(i)))
        for i in range(2)]
    mesh_worker.finish([single], root / "one")
    mesh_worker.finish(pair, root / "two")
    return mesh_worker.load(root / "one"), [mesh_worker.load(root / "two", pid)
                                            for pid in range(2)]


@pytest.mark.slow
def test_two_processes_form_one_mesh(one_and_two_processes):
    _, pair = one_and_two_processes
    for _, report in pair:
        assert report["processes"] == 2
        assert report["devices"] == 2


@pytest.mark.slow
def test_two_processes_match_one(one_and_two_processes, workload, mesh_worker):
    (a, report_one), pair = one_and_two_processes
    assert workload not in report_one["errors"], report_one["errors"][workload]
    for b, report in pair:
        # A result split over the processes' devices read with np.asarray instead of
        # sharding.to_host fails here with "spans non-addressable devices".
        assert workload not in report["errors"], report["errors"][workload]
        mesh_worker.assert_same(workload, a, b)


@pytest.mark.slow
def test_checkpoint_resumes_across_processes(one_and_two_processes):
    _, pair = one_and_two_processes
    for b, report in pair:
        assert "base" not in report["errors"], report["errors"]["base"]
        assert (b["base/resumed"] == b["base/variables"]).all()
