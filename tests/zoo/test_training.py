"""Training classifiers (pdiff_jax.zoo.training): subset snapshots that resume exactly and
leave BatchNorm statistics alone, and the GPU throughput paths checked on the CPU
(device-resident data, k steps per dispatch, bf16 compute), each of which must train
what the plain path trains."""

import jax
import numpy as np
import pytest

from pdiff_jax.evaluation.evaluator import compute_tail_inputs
from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset
from pdiff_jax.zoo import training
from pdiff_jax.zoo.training import train_subset_snapshots

# A few steps only: early SGD with BatchNorm amplifies float rounding (measured: 2e-7
# after one step, 5e-6 after three, 5e-3 after ten), so longer runs cannot be compared.
RECIPE = dict(epochs=2, batch_size=32, seed=3, optimizer="sgd", lr=0.05, momentum=0.9,
              weight_decay=5e-4, schedule="cosine")


@pytest.fixture(scope="module")
def cnn(digits):
    model_def = get_model("cnn_bn", num_classes=10, input_shape=digits.image_shape)
    return model_def, jax.device_get(model_def.init(jax.random.key(0)))


def train(cnn, digits, n_images=64, **kw):
    model_def, variables = cnn
    args = dict(RECIPE, data_stats=(digits.mean, digits.std))
    args.update(kw)
    return training.train_classifier(model_def, variables, digits.x_train[:n_images],
                                     digits.y_train[:n_images], **args)


def assert_same_training(a, b, start):
    """``a`` and ``b`` moved from ``start`` by the same steps: they differ by float rounding,
    not by a different batch or key. Per tensor, they are closer than a tenth of how far
    training moved it (L2 norms). Rounding, which BatchNorm amplifies and which XLA does
    differently on another CPU, came to <= 0.1 % of the move on an AMD CPU and to 1.7 %
    (largest entry) on an Intel one; another seed's batch order gives >= 100 %."""
    def check(x, y, x0):
        x, y, x0 = (np.asarray(v, np.float64) for v in (x, y, x0))
        assert np.abs(x - x0).max() > 1e-4
        assert np.linalg.norm(x - y) <= 0.1 * np.linalg.norm(x - x0)
    jax.tree.map(check, a, b, start)


def test_device_resident_training_equals_the_host_pipeline(cnn, digits):
    # two epochs of two steps: each epoch's batch order is the host pipeline's
    host = train(cnn, digits, data_placement="host")
    device = train(cnn, digits, data_placement="device", steps_per_dispatch=1)
    assert_same_training(host, device, cnn[1])


def test_k_steps_per_dispatch_equal_k_single_steps(cnn, digits):
    # 3 steps: chunks of 2 and 1 against three single calls, with augmentation.
    kw = dict(n_images=96, epochs=1, data_placement="device", augment="crop_flip")
    one = train(cnn, digits, steps_per_dispatch=1, **kw)
    two = train(cnn, digits, steps_per_dispatch=2, **kw)
    assert_same_training(one, two, cnn[1])
    host = train(cnn, digits, n_images=96, epochs=1, data_placement="host", augment="crop_flip")
    # Device augmentation draws its own offsets: a different (valid) run.
    assert np.abs(host["params"]["fc2"]["kernel"] - one["params"]["fc2"]["kernel"]).max() > 1e-3


def test_bf16_compute_keeps_float32_parameters_and_learns(cnn, digits):
    f32 = train(cnn, digits, epochs=1, data_placement="device")
    bf16 = train(cnn, digits, epochs=1, data_placement="device", precision="bf16")
    for leaf in jax.tree.leaves(bf16):
        assert leaf.dtype == np.float32
    # The same run in lower precision: close to the float32 one, not equal to it.
    a, b = f32["params"]["fc2"]["kernel"], bf16["params"]["fc2"]["kernel"]
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(a, b, atol=0.05)
    with pytest.raises(ValueError, match="precision"):
        train(cnn, digits, epochs=1, precision="fp8")


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


def test_an_entire_batchnorm_network_trains_in_training_mode_when_asked(small_mnist):
    # The frontier's fine-tuned members of a whole cnn_bn zoo diverged in eval mode (12 %
    # after 20 steps at lr 0.01); 'train' mode normalizes with batch statistics and moves
    # the running ones as the seed training did, and never steps them by gradient.
    from pdiff_jax.data.batches import step_batch

    md = get_model("cnn_bn", num_classes=10, input_shape=(28, 28, 1))
    variables = md.init(jax.random.key(0))
    entire = ParamSpec.from_variables(variables, ".*")
    assert training.batch_norm_mode(entire, None) == "train"
    assert training.batch_norm_mode(ParamSpec.from_variables(variables, "params/.*"),
                                    None) == "frozen"
    x, y = small_mnist.x_train[:256], small_mnist.y_train[:256]
    start = np.asarray(flatten_subset(variables, entire))
    # lr 0: the parameters stay, and the statistics are the running average after one batch.
    (snap,) = train_subset_snapshots(md, variables, entire, None, x, y, num_snapshots=1,
                                     save_every=1, optimizer="sgd", lr=0.0, batch_size=64,
                                     seed=0, batch_norm="train")
    _, moved = md.apply(variables, x[step_batch(256, 64, seed=0, step=0)], train=True)
    expected = np.asarray(flatten_subset({**variables, **moved}, entire))
    np.testing.assert_allclose(snap, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(snap, start)
    with pytest.raises(ValueError, match="batch_norm"):
        train_subset_snapshots(md, variables, entire, None, x, y, num_snapshots=1,
                               save_every=1, optimizer="sgd", lr=0.0, batch_size=64, seed=0,
                               batch_norm="eval")
