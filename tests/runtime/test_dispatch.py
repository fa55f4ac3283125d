"""How many steps one dispatch runs and where the data lives
(pdiff_jax.runtime.dispatch): on the CPU one step per call and the host pipeline. The
GPU paths themselves are checked on the CPU where they run: zoo/test_training.py
(classifiers), generator/test_stages.py (the generator)."""

import pytest

from pdiff_jax.runtime import dispatch


def test_cpu_keeps_one_step_per_call_and_the_host_pipeline():
    assert dispatch.platform() == "cpu"
    assert dispatch.steps_per_dispatch(0) == 1
    assert dispatch.steps_per_dispatch(7) == 7
    assert not dispatch.use_device_data("auto", 10)
    assert dispatch.use_device_data("device", 10**15)
    with pytest.raises(ValueError, match="placement"):
        dispatch.use_device_data("gpu", 10)
