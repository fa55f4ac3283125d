"""ResNet permutation spec: it covers every variable, and permuting by it keeps the logits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.models import get_model
from pdiff_jax.models.registry import ModelDef
from pdiff_jax.models.resnet import ResNet
from pdiff_jax.params.subset import (
    ParamSpec,
    flatten_subset,
    merge,
    unflatten_subset,
    variable_paths,
)
from pdiff_jax.zoo.alignment import (
    PermutationSpec,
    align_to_reference,
    align_zoo,
    apply_permutations,
    permutation_spec_for,
    weight_matching,
)
from pdiff_jax.zoo.resnet_permutations import resnet_permutation_spec

INPUT_SHAPE = (32, 32, 3)
WIDTH = 4


def _resnet18() -> ModelDef:
    return get_model("resnet18", num_classes=10, input_shape=INPUT_SHAPE, width=WIDTH,
                     stem="cifar")


def _tiny_bottleneck() -> ModelDef:
    """Bottleneck blocks: layer1_0 widens the stem 4x (shortcut conv at stride 1),
    layer2_0 strides, layer2_1 adds its input unchanged."""
    module = ResNet(stage_sizes=(1, 2), num_classes=10, block="bottleneck", stem="cifar",
                    width=2)
    return ModelDef(name="resnet_tiny_bottleneck", module=module, input_shape=INPUT_SHAPE,
                    num_classes=10)


MODELS = {"resnet18": _resnet18, "bottleneck": _tiny_bottleneck}


@functools.cache
def _model(name: str) -> ModelDef:
    return MODELS[name]()


@functools.cache
def _logits_fn(name: str):
    return jax.jit(_model(name).apply)


def _member(name: str, seed: int) -> dict[str, np.ndarray]:
    """path -> array of a freshly initialised network whose BatchNorms are not the
    identity (random scale, bias, running mean and variance), so they must be permuted
    with their channels for the logits to survive."""
    variables = _model(name).init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    out = {}
    for path, leaf in zip(variable_paths(variables), jax.tree.leaves(variables), strict=True):
        leaf = np.asarray(leaf)
        kind = path.rsplit("/", 1)[-1]
        if kind == "scale":
            leaf = rng.uniform(0.5, 1.5, leaf.shape)
        elif kind == "var":
            leaf = rng.uniform(0.5, 2.0, leaf.shape)
        elif kind in ("mean", "bias"):
            leaf = rng.normal(0.0, 0.3, leaf.shape)
        out[path] = leaf.astype(np.float32)
    return out


def _spec(name: str) -> ParamSpec:
    return ParamSpec.from_variables(_model(name).init(jax.random.key(0)), ".*")


def _to_vector(arrays, spec: ParamSpec) -> np.ndarray:
    return np.concatenate([np.ravel(arrays[n]) for n in spec.names]).astype(np.float32)


def _from_vector(vector, spec: ParamSpec) -> dict[str, np.ndarray]:
    return {n: vector[o:o + int(np.prod(s))].reshape(s)
            for n, s, o in zip(spec.names, spec.shapes, spec.offsets, strict=True)}


def _logits(name: str, arrays) -> np.ndarray:
    """f32[B, 10] eval-mode logits on fixed inputs."""
    spec = _spec(name)
    vector = jnp.asarray(_to_vector(arrays, spec))
    variables = merge(_model(name).init(jax.random.key(0)), unflatten_subset(vector, spec))
    x = jax.random.normal(jax.random.key(99), (8, *INPUT_SHAPE))
    return np.asarray(_logits_fn(name)(variables, x))


def _assert_same_logits(actual, expected):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * max(1.0, scale))


def test_resnet18_groups_follow_the_residual_streams():
    pspec = permutation_spec_for(_resnet18())
    w = WIDTH
    assert dict(pspec.sizes) == {
        "P_stream/stem": w, "P_stream/layer2_0": 2 * w, "P_stream/layer3_0": 4 * w,
        "P_stream/layer4_0": 8 * w,
        **{f"P_layer{s}_{b}/conv1": w * 2 ** (s - 1) for s in (1, 2, 3, 4) for b in (0, 1)}}
    axes = pspec.axes
    # layer1 has no shortcut conv: the stem's stream runs through it unchanged.
    assert axes["params/conv1/kernel"] == (None, None, None, "P_stream/stem")
    assert axes["params/layer1_1/bn2/scale"] == ("P_stream/stem",)
    assert axes["params/layer1_1/conv1/kernel"][2:] == ("P_stream/stem", "P_layer1_1/conv1")
    # layer2_0 reads the old stream (conv1, shortcut) and writes the new one (bn2, shortcut).
    assert axes["params/layer2_0/downsample_conv/kernel"][2:] == ("P_stream/stem",
                                                                  "P_stream/layer2_0")
    assert axes["params/layer2_0/conv1/kernel"][2] == "P_stream/stem"
    assert axes["batch_stats/layer2_0/bn2/mean"] == ("P_stream/layer2_0",)
    assert axes["batch_stats/layer2_1/bn2/var"] == ("P_stream/layer2_0",)
    assert axes["params/fc/kernel"] == ("P_stream/layer4_0", None)
    assert axes["params/fc/bias"] == (None,)


@pytest.mark.parametrize("model_def", [
    _resnet18(), _tiny_bottleneck(),
    get_model("resnet50", num_classes=10, input_shape=INPUT_SHAPE, width=2),
    get_model("resnet18", num_classes=7, input_shape=(64, 64, 1), width=3, stem="imagenet"),
], ids=["resnet18", "bottleneck", "resnet50", "resnet18_imagenet_stem"])
def test_every_variable_is_placed_and_every_group_fits_its_axes(model_def):
    pspec = permutation_spec_for(model_def)
    shapes = jax.eval_shape(model_def.init, jax.random.key(0))
    named = dict(zip(variable_paths(shapes), jax.tree.leaves(shapes), strict=True))
    assert set(pspec.axes) == set(named)
    for path, axes in pspec.axes.items():
        assert len(axes) == len(named[path].shape), path
        for axis, g in enumerate(axes):
            if g is not None:
                assert named[path].shape[axis] == pspec.sizes[g], (path, axis, g)
    # Every group is written by some layer (a kernel's output axis) and read by another.
    for g, members in pspec.groups().items():
        kernels = [(p, a, len(named[p].shape)) for p, a in members if p.endswith("/kernel")]
        assert any(a == n - 1 for _, a, n in kernels), g
        assert any(a == n - 2 for _, a, n in kernels), g


@pytest.mark.parametrize("name", list(MODELS))
def test_permuting_every_group_keeps_the_logits(name):
    pspec = permutation_spec_for(_model(name))
    member = _member(name, 1)
    rng = np.random.default_rng(3)
    perms = {g: rng.permutation(n) for g, n in pspec.sizes.items()}
    permuted = apply_permutations(member, pspec, perms)
    assert not np.array_equal(_to_vector(permuted, _spec(name)), _to_vector(member, _spec(name)))
    before = _logits(name, member)
    _assert_same_logits(_logits(name, permuted), before)
    # The check can fail: a spec that forgets a reader of a stream (the classifier after
    # pooling) or a writer of one (a shortcut) gives a different network.
    shortcut = next(p for p in pspec.axes if "/downsample_" in p and p.endswith("/kernel"))
    for path in ("params/fc/kernel", shortcut):
        broken = PermutationSpec({**pspec.axes, path: (None,) * len(pspec.axes[path])},
                                 pspec.sizes)
        changed = _logits(name, apply_permutations(member, broken, perms))
        assert np.abs(changed - before).max() > 1e-3 * np.abs(before).max(), path


@pytest.mark.parametrize("name", list(MODELS))
def test_weight_matching_undoes_a_random_permutation(name):
    pspec = permutation_spec_for(_model(name))
    member = _member(name, 2)
    rng = np.random.default_rng(5)
    shuffled = apply_permutations(member, pspec,
                                  {g: rng.permutation(n) for g, n in pspec.sizes.items()})
    perms = weight_matching(member, shuffled, pspec)
    restored = apply_permutations(shuffled, pspec, perms)
    for path in member:
        np.testing.assert_array_equal(restored[path], member[path], err_msg=path)


@pytest.mark.parametrize("name", list(MODELS))
def test_weight_matching_brings_another_seed_closer_with_the_same_logits(name):
    spec, pspec = _spec(name), permutation_spec_for(_model(name))
    reference, other = _member(name, 3), _member(name, 4)
    vectors = np.stack([_to_vector(reference, spec), _to_vector(other, spec)])
    aligned = align_to_reference(vectors, spec, pspec)
    np.testing.assert_array_equal(np.sort(aligned[1]), np.sort(vectors[1]))
    before = np.linalg.norm(vectors[1] - vectors[0])
    after = np.linalg.norm(aligned[1] - vectors[0])
    assert after < 0.99 * before, (before, after)
    _assert_same_logits(_logits(name, _from_vector(aligned[1], spec)),
                        _logits(name, other))


def test_merge_many_on_a_resnet_zoo_keeps_every_members_logits():
    name = "resnet18"
    spec = _spec(name)
    members = [_member(name, seed) for seed in (10, 11, 12)]
    vectors = np.stack([_to_vector(m, spec) for m in members])
    # The zoo's own flattening (collect.py's) agrees with this test's.
    variables = merge(_model(name).init(jax.random.key(0)),
                      unflatten_subset(jnp.asarray(vectors[0]), spec))
    np.testing.assert_array_equal(np.asarray(flatten_subset(variables, spec)), vectors[0])
    merged = align_zoo(vectors, spec, _model(name), method="merge_many")
    assert merged.shape == vectors.shape and merged.dtype == np.float32
    assert not np.array_equal(merged, vectors)
    np.testing.assert_array_equal(np.sort(merged, axis=1), np.sort(vectors, axis=1))
    for k, member in enumerate(members):
        _assert_same_logits(_logits(name, _from_vector(merged[k], spec)),
                            _logits(name, member))
    spread = lambda v: np.linalg.norm(v - v.mean(0), axis=1).mean()
    assert spread(merged) < spread(vectors)


def test_a_variable_outside_the_resnet_layout_is_named():
    class Extra(ResNet):
        def setup(self):
            super().setup()
            self.head_norm = self.param("head_norm", jax.nn.initializers.ones, (3,))

    model_def = ModelDef(name="odd", module=Extra(stage_sizes=(1,), num_classes=3, width=2),
                         input_shape=INPUT_SHAPE, num_classes=3)
    with pytest.raises(ValueError, match="head_norm"):
        resnet_permutation_spec(model_def)
