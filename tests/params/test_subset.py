"""Tests for pdiff_jax.params.subset: flat vectors <-> subsets of network variables."""

from __future__ import annotations

import dataclasses
import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.flatten_util import ravel_pytree

from pdiff_jax.params.subset import (
    ParamSpec,
    SubsetError,
    flatten_subset,
    merge,
    select_subset,
    unflatten_subset,
    variable_paths,
)

# ---------------------------------------------------------------------------
# Two tiny real Flax networks


class TinyConvNet(nn.Module):
    features: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):  # x: [B, H, W, C]
        x = nn.Conv(self.features, (3, 3), name="conv1")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn1")(x))
        x = nn.Conv(self.features, (3, 3), name="conv2")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn2")(x))
        return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))  # [B, 3]


class TinyBlock(nn.Module):
    """A pre-LayerNorm transformer block; one layer keeps bfloat16 parameters."""

    @nn.compact
    def __call__(self, x):  # x: [B, L, 8]
        h = nn.LayerNorm(name="ln1")(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, name="attn")(h, h)
        h = nn.LayerNorm(name="ln2")(x)
        h = nn.gelu(nn.Dense(16, param_dtype=jnp.bfloat16, dtype=jnp.float32, name="mlp_in")(h))
        return x + nn.Dense(8, name="mlp_out")(h)


@dataclasses.dataclass(frozen=True)
class FakeModelDef:
    """Stands in for a models.ModelDef: only ``default_subset`` matters here."""

    default_subset: tuple[str, ...]


CONV_DEF = FakeModelDef(default_subset=(r"params/bn1/(scale|bias)", r"params/bn2/(scale|bias)"))
BLOCK_DEF = FakeModelDef(default_subset=(r"params/ln2/.*", r"params/mlp_out/bias"))


def _assert_identical(a, b):
    """Same structure, shapes, dtypes and values (NaNs equal). ``strict=True`` alone
    does not compare dtypes in chex 0.1.92."""
    chex.assert_trees_all_equal_structs(a, b)
    chex.assert_trees_all_equal_dtypes(a, b)
    chex.assert_trees_all_equal(a, b, strict=True)


def _jitter(variables, seed):
    """Make every leaf distinct (init leaves BatchNorm at exact 0/1) without changing dtypes."""
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [(x + 0.1 * jax.random.normal(k, x.shape)).astype(x.dtype)
              for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, leaves)


@pytest.fixture(scope="module")
def conv():
    model = TinyConvNet()
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
    # One jitted init compiles once; eager init compiles every small op (slow on CPU).
    variables = jax.jit(lambda key: _jitter(model.init(key, x), seed=2))(jax.random.key(0))
    return model, variables, x


@pytest.fixture(scope="module")
def block():
    model = TinyBlock()
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))
    variables = jax.jit(lambda key: _jitter(model.init(key, x), seed=2))(jax.random.key(0))
    return model, variables, x


# ---------------------------------------------------------------------------
# Real networks


def test_variable_paths_name_collection_first(conv):
    _, variables, _ = conv
    paths = variable_paths(variables)
    assert "params/bn2/scale" in paths
    assert "batch_stats/bn2/mean" in paths
    assert "params/conv1/kernel" in paths
    assert all(p.split("/")[0] in ("params", "batch_stats") for p in paths)
    assert len(paths) == len(jax.tree.leaves(variables))


def test_default_subset_of_conv_net(conv):
    _, variables, _ = conv
    spec = ParamSpec.from_variables(variables, CONV_DEF)
    assert spec.names == ("params/bn1/bias", "params/bn1/scale",
                          "params/bn2/bias", "params/bn2/scale")
    assert spec.shapes == ((4,),) * 4
    assert spec.dtypes == ("float32",) * 4
    assert spec.offsets == (0, 4, 8, 12)
    assert spec.size == 16
    vec = flatten_subset(variables, spec)
    chex.assert_shape(vec, (16,))
    chex.assert_type(vec, jnp.float32)
    np.testing.assert_array_equal(vec[8:12], variables["params"]["bn2"]["bias"])


@pytest.mark.parametrize("net", ["conv", "block"])
@pytest.mark.parametrize("whole", [False, True], ids=["default", "whole"])
def test_round_trip_is_exact(net, whole, request):
    _, variables, _ = request.getfixturevalue(net)
    model_def = CONV_DEF if net == "conv" else BLOCK_DEF
    spec = ParamSpec.from_variables(variables, ".*" if whole else model_def)
    if whole:
        assert spec.size == sum(leaf.size for leaf in jax.tree.leaves(variables))
    vec = flatten_subset(variables, spec)
    subset = unflatten_subset(vec, spec)
    _assert_identical(subset, select_subset(variables, spec))
    _assert_identical(merge(variables, subset), variables)


def test_block_whole_network_keeps_bfloat16(block):
    _, variables, _ = block
    spec = ParamSpec.from_variables(variables, ".*")
    assert spec.dtypes[spec.names.index("params/mlp_in/kernel")] == "bfloat16"
    subset = unflatten_subset(flatten_subset(variables, spec), spec)
    assert subset["params"]["mlp_in"]["kernel"].dtype == jnp.bfloat16


def test_whole_network_vector_matches_ravel_pytree(conv):
    # An independent flattening (same leaf order) must give the same vector.
    _, variables, _ = conv
    spec = ParamSpec.from_variables(variables, ".*")
    expected, _ = ravel_pytree(variables)
    np.testing.assert_array_equal(flatten_subset(variables, spec), expected)


def test_merged_vector_changes_the_network(conv):
    # bn2 scale = bias = 0 silences every feature: the net outputs the head bias.
    model, variables, x = conv
    spec = ParamSpec.from_variables(variables, r"params/bn2/.*")
    merged = merge(variables, unflatten_subset(jnp.zeros(spec.size), spec))
    out = model.apply(merged, x)
    np.testing.assert_allclose(out, jnp.broadcast_to(variables["params"]["head"]["bias"], (2, 3)),
                               atol=1e-6)
    assert not np.allclose(model.apply(variables, x), out)
    # Only the selected leaves changed.
    assert merged["batch_stats"] is not None
    chex.assert_trees_all_equal(merged["batch_stats"], variables["batch_stats"])
    chex.assert_trees_all_equal(merged["params"]["conv2"], variables["params"]["conv2"])


def test_selector_forms_agree(conv):
    _, variables, _ = conv
    by_model = ParamSpec.from_variables(variables, CONV_DEF)
    by_regex = ParamSpec.from_variables(variables, r"params/bn[12]/(scale|bias)")
    by_names = ParamSpec.from_variables(
        variables, ["params/bn2/scale", "params/bn1/scale", "params/bn2/bias", "params/bn1/bias"])
    assert by_model == by_regex == by_names
    assert hash(by_model) == hash(by_names)


def test_selector_covers_batch_stats(conv):
    _, variables, _ = conv
    spec = ParamSpec.from_variables(variables, [r"batch_stats/bn2/.*", r"params/bn2/scale"])
    assert spec.names == ("batch_stats/bn2/mean", "batch_stats/bn2/var", "params/bn2/scale")
    subset = unflatten_subset(flatten_subset(variables, spec), spec)
    chex.assert_trees_all_equal(subset["batch_stats"]["bn2"], variables["batch_stats"]["bn2"])


def test_fullmatch_does_not_pick_longer_names():
    variables = {"params": {"bn": {"scale": jnp.ones(2), "scale_extra": jnp.ones(3)}}}
    spec = ParamSpec.from_variables(variables, "params/bn/scale")
    assert spec.names == ("params/bn/scale",)


def test_spec_from_abstract_variables(conv):
    model, variables, x = conv
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    assert ParamSpec.from_variables(abstract, CONV_DEF) == ParamSpec.from_variables(
        variables, CONV_DEF)


def test_spec_json_round_trip(block):
    _, variables, _ = block
    spec = ParamSpec.from_variables(variables, ".*")
    again = ParamSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    assert hash(again) == hash(spec)
    assert again.offsets == spec.offsets
    assert again.size == spec.size


# ---------------------------------------------------------------------------
# jit and vmap


def test_jit_matches_eager_and_does_not_retrace_for_equal_specs(conv):
    _, variables, _ = conv
    spec = ParamSpec.from_variables(variables, CONV_DEF)
    traces = []

    @jax.jit
    def round_trip(v, vec, spec):
        traces.append(1)
        return flatten_subset(v, spec), merge(v, unflatten_subset(vec, spec))

    vec = flatten_subset(variables, spec)
    flat, merged = round_trip(variables, vec + 1.0, spec)
    np.testing.assert_array_equal(flat, vec)
    np.testing.assert_array_equal(merged["params"]["bn2"]["scale"],
                                  variables["params"]["bn2"]["scale"] + 1.0)
    # An equal spec (rebuilt from JSON) hits the same compiled function.
    round_trip(variables, vec, ParamSpec.from_json(spec.to_json()))
    assert len(traces) == 1


def test_vmap_over_k_vectors_evaluates_k_networks(conv):
    model, variables, x = conv
    spec = ParamSpec.from_variables(variables, CONV_DEF)
    k = 3
    vecs = flatten_subset(variables, spec) + jnp.arange(k, dtype=jnp.float32)[:, None]  # [K, D]
    subsets = jax.vmap(unflatten_subset, in_axes=(0, None))(vecs, spec)
    chex.assert_shape(subsets["params"]["bn1"]["scale"], (k, 4))
    stacked = jax.vmap(merge, in_axes=(None, 0))(variables, subsets)

    @jax.jit
    def evaluate(vecs):
        nets = jax.vmap(lambda v: merge(variables, unflatten_subset(v, spec)))(vecs)
        return jax.vmap(lambda v: model.apply(v, x))(nets)  # [K, B, 3]

    outs = evaluate(vecs)
    for i in range(k):
        one = merge(variables, unflatten_subset(vecs[i], spec))
        chex.assert_trees_all_equal(jax.tree.map(lambda a, i=i: a[i], stacked), one)
        np.testing.assert_allclose(outs[i], model.apply(one, x), rtol=1e-5, atol=1e-6)
    # And back: flattening the K stacked networks recovers the K vectors.
    back = jax.vmap(flatten_subset, in_axes=(0, None))(stacked, spec)
    np.testing.assert_array_equal(back, vecs)


# ---------------------------------------------------------------------------
# Errors


def test_selector_matching_nothing_names_closest(conv):
    _, variables, _ = conv
    with pytest.raises(SubsetError, match=r"'params/bn2/scael'.*params/bn2/scale"):
        ParamSpec.from_variables(variables, "params/bn2/scael")
    # One bad pattern among good ones is still an error (typos must not shrink a subset).
    with pytest.raises(SubsetError, match="params/bn3/scale"):
        ParamSpec.from_variables(variables, ["params/bn2/scale", "params/bn3/scale"])


@pytest.mark.parametrize("selector", [3, [], ["ok", 4], None])
def test_bad_selector_types(conv, selector):
    with pytest.raises(SubsetError, match="selector must be"):
        ParamSpec.from_variables(conv[1], selector)


def test_invalid_regex(conv):
    with pytest.raises(SubsetError, match="not a valid regex"):
        ParamSpec.from_variables(conv[1], "params/(bn2")


def test_wrong_vector_length(conv):
    _, variables, _ = conv
    spec = ParamSpec.from_variables(variables, CONV_DEF)
    with pytest.raises(SubsetError, match=r"shape \(15,\); the spec needs \(16,\)"):
        unflatten_subset(jnp.zeros(15), spec)
    with pytest.raises(SubsetError, match=r"use jax\.vmap"):
        unflatten_subset(jnp.zeros((2, 16)), spec)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.float16, jnp.bfloat16])
def test_vector_dtype_mismatch(conv, dtype):
    spec = ParamSpec.from_variables(conv[1], CONV_DEF)
    with pytest.raises(SubsetError, match=f"dtype {jnp.dtype(dtype).name}; expected float32"):
        unflatten_subset(jnp.zeros(spec.size, dtype), spec)


def test_variables_dtype_mismatch(conv):
    _, variables, _ = conv
    spec = ParamSpec.from_variables(variables, CONV_DEF)
    half = jax.tree.map(lambda x: x, variables)
    half["params"]["bn2"]["scale"] = half["params"]["bn2"]["scale"].astype(jnp.bfloat16)
    with pytest.raises(SubsetError, match=r"'params/bn2/scale' has dtype bfloat16.*float32"):
        flatten_subset(half, spec)


def test_spec_on_other_architecture_missing_leaf(conv, block):
    spec = ParamSpec.from_variables(conv[1], CONV_DEF)
    with pytest.raises(SubsetError, match="'params/bn1/bias' of the spec is missing"):
        flatten_subset(block[1], spec)


def test_spec_on_other_architecture_shape_mismatch(conv):
    _, variables, x = conv
    wide = jax.eval_shape(TinyConvNet(features=8).init, jax.random.key(0), x)
    spec = ParamSpec.from_variables(variables, CONV_DEF)
    with pytest.raises(SubsetError, match=r"'params/bn1/bias' has shape \(8,\).*\(4,\)"):
        flatten_subset(wide, spec)
    # Under jit the same check fires at trace time.
    with pytest.raises(SubsetError, match="params/bn1/bias"):
        jax.jit(flatten_subset).lower(wide, spec)


def test_merge_errors(conv):
    _, variables, _ = conv
    with pytest.raises(SubsetError, match="'params/bn9/scale' is not a variable"):
        merge(variables, {"params": {"bn9": {"scale": jnp.ones(4)}}})
    with pytest.raises(SubsetError, match=r"'params/bn2/scale' has shape \(5,\)"):
        merge(variables, {"params": {"bn2": {"scale": jnp.ones(5)}}})
    with pytest.raises(SubsetError, match="in_axes=\\(None, 0\\)"):
        merge(variables, {"params": {"bn2": {"scale": jnp.ones((3, 4))}}})
    with pytest.raises(SubsetError, match="'params/bn2/scale' has dtype float16"):
        merge(variables, {"params": {"bn2": {"scale": jnp.ones(4, jnp.float16)}}})


def test_malformed_specs():
    with pytest.raises(SubsetError, match="one shape and dtype per name"):
        ParamSpec(("a", "b"), ((1,),), ("float32", "float32"))
    with pytest.raises(SubsetError, match="not unique"):
        ParamSpec(("a", "a"), ((1,), (1,)), ("float32", "float32"))
    with pytest.raises(SubsetError, match="not a ParamSpec JSON"):
        ParamSpec.from_json({"names": ["a"]})
    with pytest.raises(SubsetError, match="size 3"):
        ParamSpec.from_json({"names": ["a"], "shapes": [[2]], "dtypes": ["float32"], "size": 3})


# ---------------------------------------------------------------------------
# Property tests over random nested pytrees

_KEYS = st.text(alphabet="abxy_", min_size=1, max_size=3)
_DTYPES = ("float32", "float16", "bfloat16", "int32")
_LEAF = st.tuples(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                  st.sampled_from(_DTYPES), st.integers(0, 2**31 - 1), st.booleans())
_TREE = st.recursive(_LEAF, lambda kids: st.dictionaries(_KEYS, kids, min_size=1, max_size=3),
                     max_leaves=8)
_VARIABLES = st.dictionaries(st.sampled_from(["params", "batch_stats"]), _TREE,
                             min_size=1, max_size=2)


def _materialise(leaf):
    shape, dtype, seed, special = leaf
    rng = np.random.default_rng(seed)
    if dtype == "int32":
        # float32 holds integers exactly up to 2**24.
        return jnp.asarray(rng.integers(-(2**24), 2**24, size=shape, dtype=np.int32))
    x = rng.standard_normal(shape).astype(np.float32) * 100
    if special and x.size:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, size=3)] = rng.choice([np.inf, -np.inf, np.nan, -0.0],
                                                              size=3)
    return jnp.asarray(x).astype(dtype)


def _random_variables(data):
    tree = data.draw(_VARIABLES)
    return jax.tree.map(_materialise, tree, is_leaf=lambda t: isinstance(t, tuple))


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_property_round_trip_random_trees(data):
    variables = _random_variables(data)
    paths = variable_paths(variables)
    chosen = data.draw(st.lists(st.sampled_from(paths), min_size=1, unique=True))
    spec = ParamSpec.from_variables(variables, chosen)
    assert set(spec.names) == set(chosen)
    assert list(spec.names) == [p for p in paths if p in chosen]  # variable order
    sizes = [int(np.prod(s)) for s in spec.shapes]
    assert spec.size == sum(sizes)
    assert list(spec.offsets) == list(np.cumsum([0, *sizes[:-1]]))
    assert ParamSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec

    vec = flatten_subset(variables, spec)
    chex.assert_shape(vec, (spec.size,))
    chex.assert_type(vec, jnp.float32)
    subset = unflatten_subset(vec, spec)
    _assert_identical(subset, select_subset(variables, spec))
    _assert_identical(merge(variables, subset), variables)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_property_random_vector_lands_in_place(data, seed):
    variables = _random_variables(data)
    spec = ParamSpec.from_variables(variables, ".*")
    x = np.random.default_rng(seed).standard_normal(spec.size).astype(np.float32)
    for dtype, offset, shape in zip(spec.dtypes, spec.offsets, spec.shapes, strict=True):
        if dtype == "int32":  # integer leaves take whole numbers only
            n = int(np.prod(shape))
            x[offset:offset + n] = np.round(x[offset:offset + n] * 1000)
    x = jnp.asarray(x)
    merged = merge(variables, unflatten_subset(x, spec))
    y = flatten_subset(merged, spec)
    # float32 leaves take the vector exactly; others take its value rounded to their dtype.
    for name, dtype, offset, shape in zip(spec.names, spec.dtypes, spec.offsets, spec.shapes,
                                          strict=True):
        n = int(np.prod(shape))
        expected = x[offset:offset + n].astype(dtype).astype(jnp.float32)
        np.testing.assert_array_equal(y[offset:offset + n], expected, err_msg=name)
    # Once rounded, a vector is a fixed point.
    np.testing.assert_array_equal(flatten_subset(merge(variables, unflatten_subset(y, spec)),
                                                 spec), y)


# ---------------------------------------------------------------------------
# The one rule for vectors: float32[D] in, no value changed silently on the way


def _mixed_variables():
    """Float, integer and bool leaves, as a network with counters and masks has."""
    return {"params": {"w": jnp.asarray([0.5, -1.25, 3.0], jnp.float32)},
            "state": {"count": jnp.asarray([6, -2], jnp.int32),
                      "mask": jnp.asarray([True, False])}}


def test_numpy_and_jax_float32_vectors_are_accepted():
    variables = _mixed_variables()
    spec = ParamSpec.from_variables(variables, ".*")
    vec = np.asarray(flatten_subset(variables, spec))
    assert vec.dtype == np.float32
    for given_vector in (vec, jnp.asarray(vec)):
        _assert_identical(unflatten_subset(given_vector, spec), select_subset(variables, spec))


@pytest.mark.parametrize("make", [
    lambda v: np.asarray(v, np.float64),
    lambda v: np.asarray(v, np.float64) + 1e-12,  # would round to v in float32
], ids=["float64", "float64_lossy"])
def test_float64_vector_is_refused_with_the_fix(conv, make):
    spec = ParamSpec.from_variables(conv[1], CONV_DEF)
    vec = make(np.ones(spec.size, np.float32))
    with pytest.raises(SubsetError, match=r"dtype float64; expected float32 \(convert it on "
                                          r"purpose with np\.asarray\(v, np\.float32\)"):
        unflatten_subset(vec, spec)


@pytest.mark.parametrize("vector", [[1.0] * 16, tuple([0.0] * 16), 1.0],
                         ids=["list", "tuple", "scalar"])
def test_non_array_vector_is_refused(conv, vector):
    spec = ParamSpec.from_variables(conv[1], CONV_DEF)
    assert spec.size == 16
    with pytest.raises(SubsetError, match=r"vector is a (list|tuple|float), not an array; "
                                          r"expected float32\[16\]: .*np\.asarray\(v, "
                                          r"np\.float32\)"):
        unflatten_subset(vector, spec)


def _with(vec, index, value):
    out = np.array(vec)
    out[index] = value
    return out


@pytest.mark.parametrize("index, value, match", [
    (3, 6.99, r"vector\[3\] = 6\.99 is for the int32 variable 'state/count', which takes only "
              r"whole numbers in \[-16777216, 16777216\].*vector\[3:5\]"),
    (4, np.nan, r"vector\[4\] = nan is for the int32 variable 'state/count'"),
    (4, 2.0 ** 25, r"vector\[4\] = 3\.3554432e\+07 is for the int32 variable"),
    (5, 0.4, r"vector\[5\] = 0\.4 is for the bool variable 'state/mask', which takes only "
             r"0 or 1"),
    (6, -1.0, r"vector\[6\] = -1\.0 is for the bool variable 'state/mask'"),
], ids=["fraction", "nan", "beyond_2**24", "bool_fraction", "bool_minus_one"])
def test_integer_and_bool_leaves_refuse_values_they_cannot_hold(index, value, match):
    variables = _mixed_variables()
    spec = ParamSpec.from_variables(variables, ".*")
    assert spec.names == ("params/w", "state/count", "state/mask")
    vec = _with(flatten_subset(variables, spec), index, value)
    with pytest.raises(SubsetError, match=match):
        unflatten_subset(vec, spec)


def test_integer_and_bool_leaves_take_exact_whole_numbers():
    variables = _mixed_variables()
    spec = ParamSpec.from_variables(variables, ".*")
    vec = np.asarray([0.5, -1.25, 3.0, 7.0, -16777216.0, 0.0, 1.0], np.float32)
    subset = unflatten_subset(vec, spec)
    np.testing.assert_array_equal(subset["state"]["count"], np.asarray([7, -16777216], np.int32))
    np.testing.assert_array_equal(subset["state"]["mask"], np.asarray([False, True]))
    chex.assert_type(subset["state"]["count"], jnp.int32)
    chex.assert_type(subset["state"]["mask"], jnp.bool_)


def test_traced_vectors_are_not_inspected_and_round_to_the_nearest_integer():
    # Under jit/vmap values cannot be checked: integer leaves round (6.99 -> 7, not 6).
    variables = _mixed_variables()
    spec = ParamSpec.from_variables(variables, ".*")
    vecs = np.stack([_with(flatten_subset(variables, spec), 3, v) for v in (6.99, 6.4, -2.6)])
    counts = jax.jit(jax.vmap(lambda v: unflatten_subset(v, spec)["state"]["count"]))(vecs)
    np.testing.assert_array_equal(counts[:, 0], [7, 6, -3])
    mask = jax.jit(lambda v: unflatten_subset(v, spec)["state"]["mask"])(
        _with(flatten_subset(variables, spec), 5, 0.4))
    np.testing.assert_array_equal(mask, [False, False])
    # The dtype and shape rule holds under tracing too (checked at trace time).
    with pytest.raises(SubsetError, match="dtype int32; expected float32"):
        jax.jit(lambda v: unflatten_subset(v, spec))(jnp.zeros(spec.size, jnp.int32))


def test_flatten_refuses_integers_a_float32_vector_cannot_hold():
    variables = _mixed_variables()
    variables["state"]["count"] = jnp.asarray([2 ** 24, -(2 ** 24) - 1], jnp.int32)
    spec = ParamSpec.from_variables(variables, ".*")
    with pytest.raises(SubsetError, match=r"integer variable 'state/count' holds values beyond "
                                          r"2\*\*24 \(max \|x\| = 16777217\)"):
        flatten_subset(variables, spec)
    # Traced leaves cannot be checked; flattening them under jit still works.
    vec = jax.jit(lambda v: flatten_subset(v, spec))(variables)
    chex.assert_shape(vec, (spec.size,))
