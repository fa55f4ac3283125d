"""Where suite runs go (pdiff_jax.suites.placement): one run per GPU or per group of CPU
cores, covering the allowed CPUs once."""

import os

from pdiff_jax.suites import placement as suite_placement


def test_core_groups_cover_the_allowed_cpus_once():
    groups = suite_placement.cpu_core_groups()
    flat = [c for g in groups for c in g]
    assert sorted(flat) == sorted(os.sched_getaffinity(0))


def test_slots_one_run_per_gpu_or_per_physical_core(monkeypatch):
    groups = [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert [s.cpus for s in suite_placement.plan_slots("cpu", 1, 4, groups)] == groups
    assert [s.cpus for s in suite_placement.plan_slots("cpu", 1, 2, groups)] == \
        [(0, 4, 1, 5), (2, 6, 3, 7)]
    assert [s.cpus for s in suite_placement.plan_slots("cpu", 1, 3, groups)] == \
        [(0, 4, 1, 5), (2, 6), (3, 7)]
    assert suite_placement.plan_slots("cpu", 1, 5, groups)[4].cpus == (0, 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert [s.env for s in suite_placement.plan_slots("gpu", 2, 2)] == \
        [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    shared = suite_placement.plan_slots("gpu", 2, 3)
    assert shared[2].env == {"CUDA_VISIBLE_DEVICES": "3", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert suite_placement.default_jobs("gpu", 8, 16) == 8
    assert suite_placement.default_jobs("tpu", 4, 16) == 1
    assert suite_placement.default_jobs("cpu", 1, 8, memory_gb=6.0) == 2
    assert suite_placement.default_jobs("cpu", 1, 2, memory_gb=64.0) == 2
