"""Zoo collection (pdiff_jax.zoo.collect): subset snapshots and seed zoos, with epoch
snapshots too."""

import numpy as np

from pdiff_jax.config.defaults import zoo_defaults
from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset


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


def test_seed_zoo_vmapped(small_mnist, tmp_path, collect_zoo):
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


def test_seed_zoo_with_epoch_snapshots_is_seed_major(small_mnist, tmp_path):
    from pdiff_jax.zoo import training
    from pdiff_jax.zoo.collect import collect_vectors, seed_of_member
    from pdiff_jax.zoo.settings import ZooSettings

    model_def = get_model("mlp3", num_classes=10, input_shape=(28, 28, 1))
    recipe = dict(epochs=1, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9,
                  weight_decay=0.0, schedule="constant")
    settings = ZooSettings(mode="seed", selector=".*", num_models=2, models_per_step=2,
                           snapshot_epochs=(1, 2), **recipe)
    _, vectors, spec, _ = collect_vectors(small_mnist, model_def, settings, seed=0,
                                          checkpoints=tmp_path)
    assert vectors.shape == (4, spec.size)
    # member 1 * 2 + 1 is seed 1 after 2 epochs: the ordinary training of that seed
    one = training.train_classifiers_batched(
        model_def, [seed_of_member(0, 0), seed_of_member(0, 1)], small_mnist.x_train,
        small_mnist.y_train, **dict(recipe, epochs=2))
    np.testing.assert_allclose(vectors[3], flatten_subset(one[1], ParamSpec.from_variables(
        one[1], ".*")), atol=1e-6)
    assert np.abs(vectors[2] - vectors[3]).max() > 1e-3   # epoch 1 != epoch 2
