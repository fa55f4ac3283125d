"""The collect stage's time, announced before it starts (zoo/estimate.py, pipeline.py): step
counts, the timed probe on a fake clock, the wording, and a real probe whose compiled step
the stage then reuses."""

from __future__ import annotations

import types

import jax
import numpy as np
import pytest

from pdiff_jax.zoo import estimate, training
from pdiff_jax.zoo.estimate import Estimate, collect_steps, seconds_per_step
from pdiff_jax.zoo.settings import ZooSettings


def test_collect_steps_count_the_base_training_snapshots_and_seeds():
    subset = ZooSettings()   # the default: 2 epochs, then 200 snapshots of batch 128
    assert collect_steps(subset, steps_per_epoch=468, batch_size=128) == 2 * 468 + 200
    seeds = ZooSettings(mode="seed", num_models=200, epochs=1)
    assert collect_steps(seeds, steps_per_epoch=468, batch_size=128) == 200 * 468
    ladder = ZooSettings(mode="seed", num_models=50, snapshot_epochs=(1, 2, 4, 8))
    assert collect_steps(ladder, steps_per_epoch=10, batch_size=128) == 50 * 15 * 10


class FakeClock:
    """A clock that a fake step advances by the durations it is given."""

    def __init__(self, durations):
        self.now, self.durations = 0.0, list(durations)

    def __call__(self):
        return self.now

    def step(self, state, x, y):
        self.now += self.durations.pop(0)
        return state, {}


@pytest.mark.parametrize("durations, expected", [
    ([1.0, 1.2, 0.8, 50.0], 1.0),   # 3 steps at most
    ([2.0, 2.0, 50.0], 2.0),        # stops once the steps add up to the budget
    ([9.0], 9.0),                   # one batch: one step
])
def test_seconds_per_step_stops_at_its_budget(durations, expected):
    clock = FakeClock(durations)
    batches = [(None, None)] * len(durations)
    got = seconds_per_step(clock.step, {}, batches, clock=clock, budget_s=3.0, max_steps=3)
    assert got == expected


def test_a_long_collect_is_announced_with_the_gpu_hint_and_a_short_one_is_not():
    long = Estimate(seconds=14 * 3600, steps=11_900, step_seconds=4.24, backend="cpu", cores=2,
                    load=3.14)
    line = estimate.long_collect_message(long, "resnet18")
    assert line.startswith("collect will take about 14 h on cpu (2 cores): 11,900 training "
                           "steps of resnet18 at 4.24 s each, timed just now at load 3.1")
    assert "On one GPU" in line and "\n" not in line
    assert estimate.long_collect_message(Estimate(600, 1000, 0.6, "cpu", 2), "cnn_bn") is None
    gpu = estimate.long_collect_message(Estimate(7200, 10**6, 0.0072, "gpu", 16), "vit_base")
    assert "about 2.0 h on gpu" in gpu and "On one GPU" not in gpu


@pytest.mark.parametrize("seconds, words", [(50, "1 min"), (45 * 60, "45 min"),
                                            (2.5 * 3600, "2.5 h"), (15.4 * 3600, "15 h")])
def test_about_keeps_an_estimates_precision(seconds, words):
    assert estimate.about(seconds) == words


def _tiny_data(n=96, shape=(8, 8, 1)):
    rng = np.random.default_rng(0)
    return types.SimpleNamespace(x_train=rng.normal(size=(n, *shape)).astype(np.float32),
                                 y_train=rng.integers(0, 10, n).astype(np.int32))


def test_the_probe_compiles_the_step_the_stage_then_reuses():
    from pdiff_jax.models import get_model

    data = _tiny_data()
    model_def = get_model("mlp3", num_classes=10, input_shape=(8, 8, 1))
    settings = ZooSettings(epochs=1, batch_size=16, num_models=4)
    found = estimate.estimate_collect(data, model_def, settings, seed=0)
    assert found.steps == 1 * (96 // 16) + 4 * 128 / 16
    assert found.step_seconds > 0 and found.seconds == pytest.approx(
        found.steps * found.step_seconds)
    compiles = []

    def listen(event, _, fun_name="", **kw):
        if event.endswith("backend_compile_duration"):
            compiles.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        training.train_classifier(model_def, jax.device_get(model_def.init(jax.random.key(0))),
                                  data.x_train, data.y_train, seed=0, **settings.recipe(),
                                  **settings.throughput())
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert not [f for f in compiles if "train_step" in f]   # the probe compiled the step


class _Stop(Exception):
    """Raised where the collect stage would start training: the test ends there."""


def test_the_collect_stage_announces_a_long_training_before_it_trains_and_not_an_import(
        tmp_path, monkeypatch):
    from pdiff_jax import pipeline
    from pdiff_jax.config.defaults import get_config
    from pdiff_jax.run import Run
    from pdiff_jax.zoo import collect, sources

    order = []
    monkeypatch.setattr(estimate, "estimate_collect", lambda *a, **k: order.append("probe") or
                        Estimate(15 * 3600, 11_700, 4.6, "cpu", 2))
    monkeypatch.setattr(estimate.logging, "warning", lambda msg, *a: order.append(msg % a))

    def train(*a, **k):
        order.append("train")
        raise _Stop

    def import_zoo(*a, **k):
        order.append("import")
        raise _Stop

    monkeypatch.setattr(collect, "collect_vectors", train)
    monkeypatch.setattr(sources, "import_zoo", import_zoo)
    config = get_config()
    config.data.max_train, config.data.max_test = 200, 50
    with pytest.raises(_Stop):
        pipeline._collect(Run(config, tmp_path / "w"), jax.random.key(0), None)
    assert order[0] == "probe" and order[2] == "train" and order[1].startswith(
        "collect will take about 15 h on cpu (2 cores)")
    order.clear()
    config.zoo.source = "timm:resnet18"    # an imported zoo trains nothing: no estimate
    with pytest.raises(_Stop):
        pipeline._collect(Run(config, tmp_path / "w2"), jax.random.key(0), None)
    assert order == ["import"]
