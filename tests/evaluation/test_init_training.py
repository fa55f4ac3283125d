"""Generated parameters as initialization: the starting points, the training path (the
ordinary zoo training loop), steps-to-target and the plot."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pdiff_jax.evaluation import init_training as it
from pdiff_jax.evaluation.evaluator import make_evaluator
from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset
from pdiff_jax.zoo import training
from pdiff_jax.zoo.store import Zoo

TRAIN = dict(optimizer="sgd", lr=0.05, batch_size=64, momentum=0.9)


@pytest.fixture(scope="module")
def mlp_zoo(small_mnist):
    """A 3-member 'seed zoo' of untrained MLP-3s (the whole network is the vector)."""
    model_def = get_model("mlp3", num_classes=10, input_shape=(28, 28, 1))
    members = [jax.device_get(model_def.init(jax.random.key(s))) for s in range(3)]
    spec = ParamSpec.from_variables(members[0], ".*")
    vectors = np.stack([np.asarray(flatten_subset(m, spec)) for m in members])
    zoo = Zoo(members[0], vectors, spec, None, np.zeros(3), np.zeros(3), {"mode": "seed"})
    evaluator = make_evaluator(model_def, members[0], spec, None, small_mnist,
                               train_examples=500, models_per_call=16)
    return zoo, model_def, evaluator


def test_starting_points(mlp_zoo):
    zoo, model_def, _ = mlp_zoo
    key, gen = jax.random.key(0), np.ones((4, zoo.spec.size), np.float32)
    kw = dict(key=key, zoo=zoo, generated=gen, model_def=model_def, n=2)
    np.testing.assert_array_equal(it.initial_vectors("pdiff", **kw), gen[:2])
    np.testing.assert_allclose(it.initial_vectors("zoo_mean", **kw)[1], zoo.vectors.mean(0))
    member = it.initial_vectors("zoo_member", **kw, members=[2])
    np.testing.assert_array_equal(member, zoo.vectors[[2, 2]])
    rand = it.initial_vectors("random", **kw)
    assert rand.shape == (2, zoo.spec.size) and np.abs(rand[0] - rand[1]).max() > 0
    with pytest.raises(ValueError, match="init kind"):
        it.initial_vectors("zeros", **kw)


def test_training_from_init_is_the_ordinary_training_loop(mlp_zoo, small_mnist, monkeypatch):
    zoo, model_def, evaluator = mlp_zoo
    calls = []
    real = training.train_subset_snapshots

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_subset_snapshots", spy)
    curves = it.init_curves(evaluator, zoo, model_def, small_mnist,
                            generated=zoo.vectors[1:], key=jax.random.key(1), n=1, steps=30,
                            every=10, **TRAIN)
    assert len(calls) == len(it.INIT_KINDS) and curves["steps"] == [0, 10, 20, 30]
    # (a) started from the generated vector, merged into the base: the loop got exactly it
    args, kwargs = calls[0]
    np.testing.assert_array_equal(flatten_subset(args[1], zoo.spec), zoo.vectors[1])
    assert kwargs["num_snapshots"] == 3 and kwargs["save_every"] == 10
    for kind in it.INIT_KINDS:
        acc = np.asarray(curves[kind]["test_acc"])
        assert acc.shape == (1, 4)
        assert acc[0, -1] > acc[0, 0] + 10, (kind, acc)   # 30 SGD steps learn MNIST a bit
    # step 0 is the starting vector itself
    start, _ = evaluator.evaluate(zoo.vectors[1:2], "test")
    assert curves["pdiff"]["test_acc"][0][0] == pytest.approx(float(start[0]))


def test_steps_to_target_and_speedup():
    assert it.steps_to_target([50, 70, 90, 95], [0, 10, 20, 30], 90) == 20.0
    assert it.steps_to_target([50, 70], [0, 10], 90) is None
    curves = {"steps": [0, 10, 20, 30, 40],
              "pdiff": {"test_acc": [[80, 91, 92, 93, 93]]},
              "zoo_mean": {"test_acc": [[10, 20, 30, 40, 50]]},
              "zoo_member": {"test_acc": [[85, 88, 91, 92, 93]]},
              "random": {"test_acc": [[10, 50, 80, 88, 91]]}}
    s = it.summarize(curves, 90.0)
    assert s["kinds"]["pdiff"]["steps_mean_curve"] == 10.0
    assert s["kinds"]["zoo_mean"]["steps_mean_curve"] is None
    assert s["speedup_pdiff_over_random"] == pytest.approx(4.0)
    assert s["speedup_pdiff_over_random_runs"] == pytest.approx(4.0)
    assert s["member_over_pdiff_runs"] == pytest.approx(2.0)
    assert s["kinds"]["zoo_mean"]["steps_to_target"]["not_reaching"] == [0]
    text = "\n".join(it.markdown(s, 10))
    assert ("| (b) zoo mean | 10.00 ± 0.00 | 50.00 ± 0.00 | never | never (never: runs 0) "
            "| 0/1 |") in text and "4.0x" in text and "2.00x" in text
    assert "| (a) p-diff samples | 80.00 ± 0.00 | 93.00 ± 0.00 | 10 | 10.0 ± 0.0 [10, 10] |" \
        in text


def test_run_stats_spread_and_runs_never_reaching():
    r = it.run_stats([0.0, 10.0, None, 30.0], 10)
    assert r["reaching"] == 3 and r["n"] == 4 and r["not_reaching"] == [2]
    assert r["mean"] == pytest.approx(40 / 3) and r["min"] == 0 and r["max"] == 30
    assert r["std"] == pytest.approx(np.std([0, 10, 30], ddof=1))
    assert r["mean_floored"] == pytest.approx(50 / 3)     # the start at target counts as 10
    none = it.run_stats([None, None], 10)
    assert none["mean"] is None and none["not_reaching"] == [0, 1]


def test_plot_of_four_curves(tmp_path):
    curves = {"steps": [0, 10], **{k: {"test_acc": [[10.0 + i, 50.0 + i]]}
                                   for i, k in enumerate(it.INIT_KINDS)}}
    path = it.plot_curves(tmp_path / "init.png", curves, target=45.0)
    assert path.stat().st_size > 0
