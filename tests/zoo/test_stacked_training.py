"""Stacked seed-zoo training (pdiff_jax.zoo.stacked_training): G networks in one step are
the G networks trained one by one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.models import get_model
from pdiff_jax.zoo import stacked_training as st
from pdiff_jax.zoo import training

INPUT_SHAPE = (16, 16, 3)
G = 3
RECIPE = dict(epochs=1, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9,
              weight_decay=5e-4, schedule="cosine")


@pytest.fixture(scope="module")
def convnet3():
    return get_model("convnet3", num_classes=10, input_shape=INPUT_SHAPE)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *INPUT_SHAPE)).astype(np.float32)
    return x, rng.integers(0, 10, size=n).astype(np.int32)


def _assert_trees_close(a, b, tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.shape(u) == np.shape(v)
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def test_grouped_forward_equals_each_networks_forward(convnet3):
    members = [convnet3.init(jax.random.key(s)) for s in range(G)]
    grouped = st.group_variables(members)
    x = _images(G * 8)[0].reshape(G, 8, *INPUT_SHAPE)
    logits = st.grouped_model(convnet3, G).apply(grouped, st.stack_images(jnp.asarray(x)))
    assert logits.shape == (G, 8, 10)
    for g in range(G):
        np.testing.assert_allclose(logits[g], convnet3.apply(members[g], x[g]),
                                   rtol=1e-5, atol=1e-5)
    # The layout round trip is exact.
    for got, want in zip(st.ungroup_variables(grouped, G), members, strict=True):
        _assert_trees_close(got, want, 0)


@pytest.mark.parametrize("formulation", ["unrolled", "grouped"])
def test_stacked_training_equals_training_one_at_a_time(convnet3, formulation):
    x, y = _images(64)
    seeds = [5, 6, 7]
    stacked = st.train_networks_stacked(convnet3, seeds, x, y, formulation=formulation,
                                        **RECIPE)
    assert len(stacked) == G
    for seed, got in zip(seeds, stacked, strict=True):
        want = training.train_classifier(convnet3, convnet3.init(jax.random.key(seed)), x, y,
                                         seed=seed, **RECIPE)
        # Same layout as ConvNet-3's variables, same numbers up to float rounding.
        _assert_trees_close(got, want, 2e-4)
    # Different seeds, different networks.
    assert not np.allclose(stacked[0]["params"]["fc"]["kernel"],
                           stacked[1]["params"]["fc"]["kernel"])


def test_unrolled_works_for_other_architectures():
    mlp = get_model("mlp3", num_classes=10, input_shape=INPUT_SHAPE)
    x, y = _images(64)
    got = st.train_networks_stacked(mlp, [1, 2], x, y, **RECIPE)
    want = training.train_classifier(mlp, mlp.init(jax.random.key(2)), x, y, seed=2, **RECIPE)
    _assert_trees_close(got[1], want, 2e-5)


def test_bad_arguments_are_refused(convnet3):
    x, y = _images(32)
    with pytest.raises(ValueError, match="augmentation"):
        st.train_networks_stacked(convnet3, [0, 1], x, y, **dict(RECIPE, augment="crop_flip"))
    with pytest.raises(ValueError, match="formulation"):
        st.train_networks_stacked(convnet3, [0, 1], x, y, formulation="vmap", **RECIPE)
    with pytest.raises(ValueError, match="ConvNet-3 only"):
        st.grouped_model(get_model("cnn_bn", num_classes=10, input_shape=INPUT_SHAPE), 2)


def test_seed_zoo_with_stack_unrolled_equals_vmap(small_mnist, tmp_path, mlp3_seed_zoo):
    """zoo.stack = 'unrolled' in collect_zoo trains the same networks as the vmapped default."""
    vectors = {stack: mlp3_seed_zoo(small_mnist, tmp_path / stack, train_examples=500,
                                    stack=stack).vectors for stack in ("vmap", "unrolled")}
    np.testing.assert_allclose(vectors["unrolled"], vectors["vmap"], rtol=1e-4, atol=1e-5)
