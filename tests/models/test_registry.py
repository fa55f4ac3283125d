"""The model registry and the ModelDef it builds (pdiff_jax.models.registry): sizes, train
and eval modes, split points, and registering models. ResNet's own layout is in
test_resnet.py."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdiff_jax.models import ModelDef, get_model, list_models, register, variable_paths
from pdiff_jax.models import registry as registry_lib

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)
IMAGENET = (224, 224, 3)


def _abstract_variables(model: ModelDef):
    return jax.eval_shape(model.init, jax.random.key(0))


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _subset_paths(model: ModelDef, variables) -> list[str]:
    return [p for p in variable_paths(variables)
            if any(re.search(rx, p) for rx in model.default_subset)]


def _subset_size(model: ModelDef, variables) -> int:
    flat = dict(zip(variable_paths(variables), jax.tree.leaves(variables), strict=True))
    return sum(int(np.prod(flat[p].shape)) for p in _subset_paths(model, variables))


@pytest.mark.parametrize(
    ("name", "num_classes", "input_shape", "kwargs", "expected"),
    [
        ("mlp3", 10, MNIST, {}, 40_785),
        ("mlp3", 10, CIFAR, {}, 155_185),
        ("convnet3", 10, CIFAR, {}, 24_714),
        ("convnet3", 100, CIFAR, {}, 70_884),
        ("resnet18", 10, CIFAR, {}, 11_173_962),
        ("resnet18", 1000, IMAGENET, {}, 11_689_512),
        ("resnet50", 1000, IMAGENET, {}, 25_557_032),
        # The count does not depend on the image size once the stem is fixed.
        ("resnet18", 1000, (64, 64, 3), {"stem": "imagenet"}, 11_689_512),
    ],
)
def test_parameter_counts(name, num_classes, input_shape, kwargs, expected):
    model = get_model(name, num_classes=num_classes, input_shape=input_shape, **kwargs)
    assert _count(_abstract_variables(model)["params"]) == expected


@pytest.mark.parametrize(
    ("name", "num_classes", "input_shape", "point", "size"),
    [
        ("cnn_bn", 10, MNIST, "bn3", 256),
        ("resnet18", 100, CIFAR, "layer4_1/bn1", 2_048),
        ("resnet50", 1000, IMAGENET, "layer4_2/bn2", 2 * (512 + 2048)),
        ("mlp3", 10, MNIST, None, 40_785),        # entire network: no useful split
        ("convnet3", 10, CIFAR, None, 24_714),
    ],
)
def test_default_subset_and_its_split_point(name, num_classes, input_shape, point, size):
    model = get_model(name, num_classes=num_classes, input_shape=input_shape)
    variables = _abstract_variables(model)
    assert _subset_size(model, variables) == size
    assert model.split_point_for(_subset_paths(model, variables)) == point


def test_split_point_for_takes_the_earliest_variable():
    model = get_model("resnet18", num_classes=10, input_shape=CIFAR)
    assert model.split_point_for(["params/layer4_1/bn2/scale"]) == "layer4_1/bn2"
    assert model.split_point_for(["params/fc/bias", "params/layer4_1/bn2/scale"]) == (
        "layer4_1/bn2")
    # The shortcut of a downsampling block is used at the residual sum.
    assert model.split_point_for(["batch_stats/layer4_0/downsample_bn/mean"]) == (
        "layer4_0/residual")
    assert model.split_point_for(["params/fc/kernel"]) == "fc"
    assert model.split_point_for(["params/conv1/kernel", "params/fc/bias"]) is None
    assert model.split_point_for([]) is None
    with pytest.raises(ValueError, match="unknown variable paths"):
        model.split_point_for(["params/layer9_0/bn1/scale"])


def test_every_normalization_layer_is_a_split_point():
    for name, shape in [("cnn_bn", MNIST), ("convnet3", CIFAR), ("resnet18", CIFAR)]:
        model = get_model(name, num_classes=10, input_shape=shape)
        bn_modules = {p.split("/", 1)[1].rsplit("/", 1)[0]
                      for p in variable_paths(_abstract_variables(model))
                      if p.startswith("batch_stats/") and "downsample" not in p}
        assert bn_modules <= set(model.split_points), name


@functools.cache
def _trained(name: str, input_shape: tuple[int, int, int], train_pass: bool = True):
    """Model, variables after one train-mode pass (non-trivial running stats), batch of 2.

    Eager Linen compiles each new op shape once (~0.5 s here), so the big ResNet skips
    the train pass and keeps its initial running statistics.
    """
    model = get_model(name, num_classes=10, input_shape=input_shape)
    variables = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, *input_shape), jnp.float32)
    if train_pass and "batch_stats" in variables:
        _, updates = model.apply(variables, x, train=True)
        variables = {**variables, **updates}
    return model, variables, x


@pytest.mark.parametrize(("name", "input_shape"),
                         [("cnn_bn", MNIST), ("convnet3", CIFAR), ("mlp3", MNIST)])
def test_split_then_merge_is_the_whole_network_at_every_point(name, input_shape):
    model, variables, x = _trained(name, input_shape)
    logits = model.apply(variables, x)
    assert logits.shape == (2, 10)
    assert len(model.split_points) >= 3
    for point in model.split_points:
        carry = model.apply(variables, x, stop=point)
        np.testing.assert_allclose(model.apply(variables, carry, start=point), logits,
                                   rtol=1e-5, atol=1e-5, err_msg=point)
    # Segments compose: input -> p -> q -> logits.
    p, q = model.split_points[1], model.split_points[-1]
    middle = model.apply(variables, model.apply(variables, x, stop=p), start=p, stop=q)
    np.testing.assert_allclose(model.apply(variables, middle, start=q), logits,
                               rtol=1e-5, atol=1e-5)


_CNN_BN_POINTS = get_model("cnn_bn", num_classes=10, input_shape=MNIST).split_points


@settings(max_examples=8, deadline=None)
@given(st.lists(st.sampled_from(_CNN_BN_POINTS), min_size=1, max_size=3, unique=True))
def test_any_chain_of_segments_is_the_whole_network(points):
    """input -> p1 -> p2 -> ... -> logits, for any increasing split points."""
    model, variables, x = _trained("cnn_bn", MNIST)
    points = sorted(points, key=_CNN_BN_POINTS.index)
    carry, start = x, None
    for point in points:
        carry = model.apply(variables, carry, start=start, stop=point)
        start = point
    np.testing.assert_allclose(model.apply(variables, carry, start=start),
                               model.apply(variables, x), rtol=1e-5, atol=1e-5)


def test_train_mode_updates_batch_stats_only_in_train():
    model, variables, x = _trained("cnn_bn", MNIST)
    eval_out = model.apply(variables, x)
    assert isinstance(eval_out, jax.Array)   # eval: logits only, nothing mutated
    train_out, updates = model.apply(variables, x * 2.0 + 1.0, train=True)
    assert set(updates) == {"batch_stats"}
    assert train_out.shape == eval_out.shape
    old, new = variables["batch_stats"], updates["batch_stats"]
    for bn in ("bn1", "bn2", "bn3", "bn4"):
        assert not np.allclose(old[bn]["mean"], new[bn]["mean"]), bn
    # Train mode normalizes with batch statistics: a different function of x.
    assert not np.allclose(model.apply(variables, x, train=True)[0], eval_out)
    # Training only the tail leaves the head's running statistics alone.
    carry = model.apply(variables, x, stop="bn3")
    _, tail_updates = model.apply(variables, carry, train=True, start="bn3")
    tail_stats = tail_updates["batch_stats"]
    np.testing.assert_array_equal(tail_stats["bn1"]["mean"], old["bn1"]["mean"])
    assert not np.allclose(tail_stats["bn3"]["mean"], old["bn3"]["mean"])


def test_mlp3_has_no_batch_stats_and_trains():
    model, variables, x = _trained("mlp3", MNIST)
    assert set(variables) == {"params"}
    logits, updates = model.apply(variables, x, train=True)
    assert logits.shape == (2, 10) and updates == {}


def test_same_key_same_variables():
    model = get_model("cnn_bn", num_classes=10, input_shape=MNIST)
    a, b = model.init(jax.random.key(3)), model.init(jax.random.key(3))
    c = model.init(jax.random.key(4))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a["params"]["fc2"]["kernel"], c["params"]["fc2"]["kernel"])


def test_bad_split_points_are_rejected():
    model, variables, x = _trained("cnn_bn", MNIST)
    with pytest.raises(ValueError, match="unknown split point 'bn9'"):
        model.apply(variables, x, stop="bn9")
    with pytest.raises(ValueError, match="comes after"):
        model.apply(variables, x, start="fc2", stop="bn1")


def test_registry_lists_and_rejects_unknown_names():
    names = list_models()
    assert {"mlp3", "convnet3", "cnn_bn", "resnet18", "resnet50"} <= set(names)
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*Did you mean 'resnet18'"):
        get_model("resnet19", num_classes=10, input_shape=CIFAR)
    with pytest.raises(ValueError, match="known models"):
        get_model("transformer", num_classes=10, input_shape=CIFAR)
    with pytest.raises(ValueError, match="input_shape"):
        get_model("mlp3", num_classes=10, input_shape=(28, 28))


def test_register_one_liner_and_decorator(monkeypatch):
    monkeypatch.setattr(registry_lib, "_FACTORIES", dict(registry_lib._FACTORIES))

    @register("tiny_mlp")
    def tiny(*, num_classes, input_shape):
        return get_model("mlp3", num_classes=num_classes, input_shape=input_shape)

    model = get_model("tiny_mlp", num_classes=3, input_shape=(4, 4, 1))
    assert model.name == "tiny_mlp" and "tiny_mlp" in list_models()
    register("tiny_mlp", tiny)  # re-registering the same definition is fine
    with pytest.raises(ValueError, match="already registered"):
        register("tiny_mlp", lambda **kw: model)
    register("alias", lambda **kw: model)
    assert get_model("alias", num_classes=3, input_shape=(4, 4, 1)).name == "alias"
    with pytest.raises(TypeError):
        get_model("mlp3", num_classes=10, input_shape=MNIST, depth=7)
