"""ResNets (pdiff_jax.models.resnet): variable names, the two stems, and the default subset's
split point inside the last block."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.models import get_model, variable_paths

CIFAR = (32, 32, 3)
IMAGENET = (224, 224, 3)


def test_resnet_names_and_stems():
    small = get_model("resnet18", num_classes=10, input_shape=CIFAR)
    large = get_model("resnet18", num_classes=10, input_shape=IMAGENET)
    assert small.module.stem == "cifar" and large.module.stem == "imagenet"
    assert "maxpool" in large.split_points and "maxpool" not in small.split_points
    paths = set(variable_paths(jax.eval_shape(large.init, jax.random.key(0))))
    for p in ["params/conv1/kernel", "params/bn1/scale", "batch_stats/bn1/var",
              "params/layer1_0/conv1/kernel", "params/layer4_1/bn2/bias",
              "params/layer2_0/downsample_conv/kernel", "params/layer2_0/downsample_bn/scale",
              "batch_stats/layer2_0/downsample_bn/mean", "params/fc/kernel", "params/fc/bias"]:
        assert p in paths, p
    assert "params/layer1_0/downsample_conv/kernel" not in paths  # identity shortcut
    shapes = jax.tree.map(lambda x: x.shape, jax.eval_shape(large.init, jax.random.key(0)))
    assert shapes["params"]["conv1"]["kernel"] == (7, 7, 3, 64)  # [kh, kw, in, out]
    assert shapes["params"]["fc"]["kernel"] == (512, 10)         # [in, out]
    assert small.split_points[:3] == ("conv1", "bn1", "layer1_0")
    assert small.split_points[-4:] == ("layer4_1/bn2", "layer4_1/residual", "pool", "fc")


def test_resnet18_default_split_is_inside_the_last_block():
    model = get_model("resnet18", num_classes=10, input_shape=CIFAR)
    variables = model.init(jax.random.key(0))   # its initial running statistics
    x = jax.random.normal(jax.random.key(1), (2, *CIFAR), jnp.float32)
    subset = [p for p in variable_paths(variables)
              if any(re.search(rx, p) for rx in model.default_subset)]
    point = model.split_point_for(subset)
    assert point == "layer4_1/bn1"
    carry = model.apply(variables, x, stop=point)
    # Inside a block the carry holds the block input and the conv1 output.
    assert set(carry) == {"x", "h"}
    assert carry["x"].shape == carry["h"].shape == (2, 4, 4, 512)
    tail = jax.jit(functools.partial(model.apply, start=point))
    logits = model.apply(variables, x)
    assert logits.shape == (2, 10)
    np.testing.assert_allclose(tail(variables, carry), logits, rtol=1e-5, atol=1e-5)
