"""Zoo collection: both modes, tail caching, resumable snapshots."""

import jax
import numpy as np
import pytest

from pdiff_jax.config.defaults import zoo_defaults
from pdiff_jax.data.batches import step_batch
from pdiff_jax.evaluation.evaluator import ManyModelEvaluator, compute_tail_inputs, make_evaluator
from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset
from pdiff_jax.zoo.collect import collect_vectors
from pdiff_jax.zoo.store import Zoo
from pdiff_jax.zoo.training import train_subset_snapshots


def collect_zoo(cfg, *, dataset, model_def, workdir, train_examples):
    """The collect stage as the pipeline runs it: vectors, then their accuracies."""
    base, vectors, spec, split = collect_vectors(dataset, model_def, seed=0,
                                                 checkpoints=workdir, **cfg.to_dict())
    evaluator = make_evaluator(model_def, base, spec, split, dataset,
                               train_examples=train_examples)
    train_acc, _ = evaluator.evaluate(vectors, "train")
    test_acc, _ = evaluator.evaluate(vectors, "test")
    return Zoo(base, vectors, spec, split, train_acc, test_acc,
               {"dataset": {"name": dataset.name}}), evaluator


def mlp3_seed_zoo(dataset, workdir, *, train_examples: int, **zoo_settings) -> Zoo:
    """A seed zoo of 3 MLP-3s (1 epoch, 3 per step) with ``zoo_settings`` on top."""
    model_def = get_model("mlp3", num_classes=10, input_shape=dataset.x_train.shape[1:])
    cfg = zoo_defaults()
    cfg.update(mode="seed", selector=".*", num_models=3, epochs=1, models_per_step=3,
               **zoo_settings)
    return collect_zoo(cfg, dataset=dataset, model_def=model_def, workdir=workdir,
                       train_examples=train_examples)[0]


@pytest.fixture(scope="module")
def subset_zoo(small_mnist, tmp_path_factory):
    md = get_model("cnn_bn", num_classes=10, input_shape=small_mnist.x_train.shape[1:])
    cfg = zoo_defaults()
    cfg.epochs, cfg.lr, cfg.num_models, cfg.checkpoint_every = 2, 0.1, 12, 5
    workdir = tmp_path_factory.mktemp("zoo")
    zoo, evaluator = collect_zoo(cfg, dataset=small_mnist, model_def=md, workdir=workdir,
                                 train_examples=1000)
    return md, zoo, evaluator, workdir


def test_subset_zoo_shapes_and_accuracy(subset_zoo):
    _md, zoo, _, _ = subset_zoo
    assert zoo.vectors.shape == (12, 256)
    assert zoo.split_point == "bn3"
    assert zoo.spec.names == ("params/bn3/bias", "params/bn3/scale",
                              "params/bn4/bias", "params/bn4/scale")
    # Snapshots are distinct points along the subset's trajectory.
    assert np.all(np.linalg.norm(np.diff(zoo.vectors, axis=0), axis=1) > 0)
    # Two epochs on 3,000 digits: far above chance (10 %).
    assert zoo.test_acc.min() > 80.0
    assert zoo.train_acc.shape == zoo.test_acc.shape == (12,)


def test_tail_gives_same_logits_as_full_network(subset_zoo, small_mnist):
    md, zoo, _, _ = subset_zoo
    x = small_mnist.x_test[:64]
    h = compute_tail_inputs(md, zoo.base, x, zoo.split_point, batch_size=32)
    tail = md.apply(zoo.base, h, start=zoo.split_point)
    full = md.apply(zoo.base, x)
    np.testing.assert_allclose(tail, full, rtol=1e-5, atol=1e-5)


def test_evaluator_matches_plain_full_network(subset_zoo, small_mnist):
    md, zoo, _, _ = subset_zoo
    from pdiff_jax.params.subset import merge, unflatten_subset
    x, y = small_mnist.x_test[:300], small_mnist.y_test[:300]
    cached = ManyModelEvaluator(md, zoo.base, zoo.spec, {"test": (x, y)},
                                split_point=zoo.split_point, batch_size=128, models_per_call=5)
    whole = ManyModelEvaluator(md, zoo.base, zoo.spec, {"test": (x, y)}, split_point=None,
                               batch_size=128, models_per_call=5, vectorize="map")
    acc_cached, wrong_cached = cached.evaluate(zoo.vectors[:7], "test")
    acc_whole, wrong_whole = whole.evaluate(zoo.vectors[:7], "test")
    for i in range(7):
        v = merge(zoo.base, unflatten_subset(zoo.vectors[i], zoo.spec))
        ref = np.asarray(md.apply(v, x).argmax(-1) != y)
        np.testing.assert_array_equal(wrong_cached[i], ref)
    np.testing.assert_array_equal(wrong_cached, wrong_whole)
    np.testing.assert_allclose(acc_cached, acc_whole)


def test_snapshots_resume_identically(subset_zoo, small_mnist, tmp_path):
    md, zoo, _, _ = subset_zoo
    inputs = compute_tail_inputs(md, zoo.base, small_mnist.x_train[:512], zoo.split_point)
    labels = small_mnist.y_train[:512]
    kw = dict(save_every=2, optimizer="sgd", lr=0.01, batch_size=64, seed=3, checkpoint_every=3)
    straight = train_subset_snapshots(md, zoo.base, zoo.spec, zoo.split_point, inputs, labels,
                                      num_snapshots=8, **kw)
    # Interrupted after 6 snapshots (two checkpoints), then resumed to 8.
    train_subset_snapshots(md, zoo.base, zoo.spec, zoo.split_point, inputs, labels,
                           num_snapshots=8, checkpoint_dir=tmp_path / "c", **kw,
                           stop_after=6)
    resumed = train_subset_snapshots(md, zoo.base, zoo.spec, zoo.split_point, inputs, labels,
                                     num_snapshots=8, checkpoint_dir=tmp_path / "c", **kw)
    np.testing.assert_array_equal(straight, resumed)


def test_step_batches_cover_each_epoch_once():
    seen = np.concatenate([step_batch(100, 10, seed=1, step=s) for s in range(10)])
    assert sorted(seen) == list(range(100))
    assert not np.array_equal(step_batch(100, 10, seed=1, step=10),
                              step_batch(100, 10, seed=1, step=0))


def test_seed_zoo_vmapped(small_mnist, tmp_path):
    md = get_model("mlp3", num_classes=10, input_shape=small_mnist.x_train.shape[1:])
    cfg = zoo_defaults()
    cfg.mode, cfg.selector, cfg.num_models, cfg.models_per_step = "seed", ".*", 4, 2
    cfg.epochs, cfg.lr, cfg.weight_decay, cfg.schedule = 1, 0.05, 0.0, "constant"
    zoo, _ = collect_zoo(cfg, dataset=small_mnist, model_def=md, workdir=tmp_path,
                         train_examples=500)
    assert zoo.vectors.shape == (4, 40785)
    assert zoo.split_point is None
    assert len({tuple(v[:5]) for v in zoo.vectors}) == 4   # different seeds, different nets
    assert zoo.test_acc.min() > 50.0
    # Model 0 of the zoo is the base network, flattened.
    spec = ParamSpec.from_variables(zoo.base, ".*")
    np.testing.assert_array_equal(flatten_subset(zoo.base, spec), zoo.vectors[0])


def test_training_an_entire_batchnorm_network_leaves_its_statistics_alone(small_mnist):
    # Fine-tuning a member of a seed zoo trains the whole vector, running means and
    # variances included in it; those are statistics, not parameters: a gradient step on a
    # variance can make it negative (NaN at once, as fine-tuning cnn_bn members did).
    md = get_model("cnn_bn", num_classes=10, input_shape=(28, 28, 1))
    variables = md.init(jax.random.key(0))
    spec = ParamSpec.from_variables(variables, ".*")
    x, y = small_mnist.x_train[:256], small_mnist.y_train[:256]
    start = np.asarray(flatten_subset(variables, spec))
    snaps = train_subset_snapshots(md, variables, spec, None, x, y, num_snapshots=2,
                                   save_every=3, optimizer="sgd", lr=0.5, batch_size=64,
                                   seed=0)
    assert np.isfinite(snaps).all()
    is_stat = np.concatenate([np.full(int(np.prod(shape)), name.startswith("batch_stats/"))
                              for name, shape in zip(spec.names, spec.shapes, strict=True)])
    np.testing.assert_array_equal(snaps[:, is_stat], np.broadcast_to(start[is_stat],
                                                                      (2, is_stat.sum())))
    assert not np.allclose(snaps[-1, ~is_stat], start[~is_stat])
