"""Tests for pdiff_jax.models.vit and .convnext: sizes, subsets and split points."""

from __future__ import annotations

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.models.registry import get_model, list_models, variable_paths

# timm's parameter counts at 1000 classes, 224x224 RGB.
TIMM_PARAM_COUNTS = {
    "vit_tiny": 5_717_416,      # vit_tiny_patch16_224
    "vit_small": 22_050_664,    # vit_small_patch16_224
    "vit_base": 86_567_656,     # vit_base_patch16_224
    "convnext_atto": 3_695_520,
    "convnext_tiny": 28_589_128,
    "convnext_small": 50_223_688,
    "convnext_base": 88_591_464,
}

# Small-image (CIFAR) models: default subset paths and the split point before them.
SMALL = {
    "vit_tiny": (("params/blocks_11/norm2/bias", "params/blocks_11/norm2/scale",
                  "params/norm/bias", "params/norm/scale"), "blocks_11/norm2"),
    "convnext_tiny": (("params/head/norm/bias", "params/head/norm/scale",
                       "params/stages_3/blocks_2/norm/bias",
                       "params/stages_3/blocks_2/norm/scale"), "stages_3/blocks_2/norm"),
}


def _count(model) -> int:
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))


@functools.cache
def _small(name: str):
    """(model, variables, images) for 10 classes at 32x32; built once per module run."""
    model = get_model(name, num_classes=10, input_shape=(32, 32, 3))
    variables = jax.jit(model.init)(jax.random.key(0))
    # Layer scale starts at 1e-6 in ConvNeXt; make the blocks matter for the tests.
    variables = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.full_like(v, 0.5) if p[-1].key == "gamma" else v, variables)
    images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    return model, variables, images


def test_registered():
    assert set(TIMM_PARAM_COUNTS) <= set(list_models())


@pytest.mark.parametrize("name", sorted(TIMM_PARAM_COUNTS))
def test_parameter_count_matches_timm(name):
    model = get_model(name, num_classes=1000, input_shape=(224, 224, 3))
    assert _count(model) == TIMM_PARAM_COUNTS[name]


def test_vit_token_count_follows_image_and_patch():
    model = get_model("vit_tiny", num_classes=10, input_shape=(32, 32, 3))
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    chex.assert_shape(shapes["params"]["pos_embed"], (1, 1 + 8 * 8, 192))  # default patch 4
    model = get_model("vit_tiny", num_classes=10, input_shape=(32, 32, 3), patch_size=8)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    chex.assert_shape(shapes["params"]["pos_embed"], (1, 1 + 4 * 4, 192))
    chex.assert_shape(shapes["params"]["patch_embed"]["kernel"], (8, 8, 3, 192))


def test_vit_rejects_patch_not_dividing_image():
    model = get_model("vit_tiny", num_classes=10, input_shape=(30, 30, 3), patch_size=4)
    with pytest.raises(ValueError, match="not a multiple of patch"):
        jax.eval_shape(model.init, jax.random.key(0))


def test_convnext_stem_patch():
    model = get_model("convnext_atto", num_classes=10, input_shape=(32, 32, 3), stem_patch=1)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    chex.assert_shape(shapes["params"]["stem"]["conv"]["kernel"], (1, 1, 3, 40))
    chex.assert_shape(shapes["params"]["stages_1"]["blocks_0"]["gamma"], (80,))
    assert "downsample" not in shapes["params"]["stages_0"]


def test_convnext_stage0_downsampling_follows_timm():
    def stage0(**kwargs):
        model = get_model("convnext_atto", num_classes=10, input_shape=(32, 32, 3), **kwargs)
        return jax.eval_shape(model.init, jax.random.key(0))["params"]["stages_0"]

    assert "downsample" not in stage0()  # small-image default: stem patch 2, no downsampling
    assert "downsample" in stage0(stem_patch=2)  # timm: patch 2 stem + stage-0 downsampling
    assert "downsample" not in stage0(stem_patch=4)
    assert "downsample" not in stage0(stem_patch=2, downsample_stage0=False)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_default_subset_and_its_split_point(name):
    model, variables, _ = _small(name)
    expected_paths, expected_point = SMALL[name]
    paths = [p for p in variable_paths(variables)
             if any(re.search(r, p) for r in model.default_subset)]
    assert tuple(sorted(paths)) == expected_paths
    assert model.split_point_for(paths) == expected_point
    # Only the last block's tail and the head are recomputed from there.
    assert model.split_points.index(expected_point) >= len(model.split_points) - 6


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_is_finite_and_deterministic(name):
    model, variables, images = _small(name)
    apply = jax.jit(model.apply)
    logits = apply(variables, images)
    chex.assert_shape(logits, (2, 10))
    chex.assert_tree_all_finite(logits)
    np.testing.assert_array_equal(logits, apply(variables, images))
    # Different inputs give different logits (the network is not degenerate).
    assert not np.allclose(logits[0], logits[1])
    # Same key, same variables.
    chex.assert_trees_all_equal(jax.jit(model.init)(jax.random.key(0)),
                                jax.jit(model.init)(jax.random.key(0)))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_train_mode_has_no_batch_stats(name):
    model, variables, images = _small(name)
    logits, updates = model.apply(variables, images, train=True)
    chex.assert_shape(logits, (2, 10))
    assert not updates.get("batch_stats")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_split_then_resume_equals_full_forward(name):
    model, variables, images = _small(name)
    full = model.apply(variables, images)
    points = model.split_points
    # The default subset's point, the last block, the pooling/head, and an early point.
    chosen = [SMALL[name][1], points[2], points[len(points) // 2], points[-2], points[-1]]
    for point in chosen:
        carry = model.apply(variables, images, stop=point)
        resumed = model.apply(variables, carry, start=point)
        np.testing.assert_allclose(resumed, full, rtol=1e-5, atol=1e-5, err_msg=point)


def test_split_point_carries():
    model, variables, images = _small("vit_tiny")
    tokens = model.apply(variables, images, stop="blocks_11/norm2")
    chex.assert_shape(tokens, (2, 65, 192))  # class token + 8x8 patches
    model, variables, images = _small("convnext_tiny")
    carry = model.apply(variables, images, stop="stages_3/blocks_2/norm")
    assert set(carry) == {"x", "h"}
    chex.assert_shape([carry["x"], carry["h"]], (2, 2, 2, 768))  # 32 / 2 / 8
