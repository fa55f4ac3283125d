"""flatten_subset round trips on every registered architecture (default subset and whole net)."""

import functools

import chex
import jax
import numpy as np
import pytest

from pdiff_jax.models import get_model, list_models
from pdiff_jax.params.subset import (
    ParamSpec,
    SubsetError,
    flatten_subset,
    merge,
    select_subset,
    unflatten_subset,
)

# Small inputs keep init cheap; the largest networks still have their full widths.
SHAPES = {"mlp3": (28, 28, 1), "cnn_bn": (28, 28, 1)}


@functools.cache
def _variables(name):
    """The architecture and variables of its exact structure filled with distinct random values.

    Shapes come from ``jax.eval_shape`` (a real init of ViT-Base takes far longer), and
    random values keep round trips from being fooled by constant inits (ones, zeros).
    """
    md = get_model(name, num_classes=10, input_shape=SHAPES.get(name, (32, 32, 3)))
    shapes = jax.eval_shape(md.init, jax.random.key(0))
    rng = np.random.default_rng(0)
    return md, jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


@pytest.mark.parametrize("name", list_models())
def test_default_subset_round_trip(name):
    md, variables = _variables(name)
    spec = ParamSpec.from_variables(variables, md)
    assert spec.size > 0
    vector = flatten_subset(variables, spec)
    chex.assert_shape(vector, (spec.size,))
    chex.assert_trees_all_equal(unflatten_subset(vector, spec), select_subset(variables, spec))
    chex.assert_trees_all_equal(merge(variables, unflatten_subset(vector, spec)), variables)
    # The spec survives JSON and still addresses the same leaves.
    again = ParamSpec.from_json(spec.to_json())
    np.testing.assert_array_equal(flatten_subset(variables, again), vector)


@pytest.mark.parametrize("name", ["mlp3", "cnn_bn", "convnet3", "resnet18", "vit_tiny",
                                  "convnext_atto"])
def test_whole_network_round_trip(name):
    _, variables = _variables(name)
    spec = ParamSpec.from_variables(variables, ".*")
    vector = flatten_subset(variables, spec)
    assert spec.size == sum(x.size for x in jax.tree.leaves(variables))
    chex.assert_trees_all_equal(merge(variables, unflatten_subset(vector, spec)), variables)


def test_paper_subset_sizes():
    assert ParamSpec.from_variables(_variables("resnet18")[1], _variables("resnet18")[0]).size \
        == 2048
    assert ParamSpec.from_variables(_variables("cnn_bn")[1], _variables("cnn_bn")[0]).size == 256


def test_spec_of_one_architecture_rejects_another():
    md, resnet = _variables("resnet18")
    spec = ParamSpec.from_variables(resnet, md)
    _, vit = _variables("vit_tiny")
    with pytest.raises(SubsetError, match="layer4_1"):
        flatten_subset(vit, spec)
