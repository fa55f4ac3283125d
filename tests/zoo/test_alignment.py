"""Weight matching (pdiff_jax.zoo.alignment): aligned zoo members compute the same logits
and sit closer to the reference."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset, merge, unflatten_subset
from pdiff_jax.zoo import training
from pdiff_jax.zoo.alignment import (
    align_to_mean,
    align_to_reference,
    align_zoo,
    apply_permutations,
    permutation_spec_for,
)

MODELS = ("mlp3", "convnet3", "cnn_bn")
INPUT_SHAPE = (16, 16, 3)   # ConvNet-3's classifier then sees a 2 x 2 x 32 channels-last flattening
K = 4
STEPS = 15


def _data(n: int, seed: int):
    """Images with a learnable labelling (argmax of a fixed projection)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *INPUT_SHAPE)).astype(np.float32)
    w = np.random.default_rng(123).normal(size=(int(np.prod(INPUT_SHAPE)), 10))
    return x, np.argmax(x.reshape(n, -1) @ w, -1).astype(np.int32)


def _member(model_def, seed: int, trained: bool) -> dict:
    variables = model_def.init(jax.random.key(seed))
    if not trained:
        return variables
    tx = training.make_optimizer(optimizer="sgd", lr=0.05, total_steps=STEPS)
    state = training.init_train_state(variables, tx)
    step = training.compiled_train_step(model_def, tx)
    for s in range(STEPS):
        x, y = _data(64, seed * 1000 + s)
        state, _ = step(state, jnp.asarray(x), jnp.asarray(y))
    return training.variables_of(state)


@functools.cache
def _zoo(name: str, trained: bool):
    """(model_def, spec, f32[K, D] vectors) of K members from different seeds."""
    model_def = get_model(name, num_classes=10, input_shape=INPUT_SHAPE)
    members = [_member(model_def, seed, trained) for seed in range(K)]
    spec = ParamSpec.from_variables(members[0], ".*")
    vectors = np.stack([np.asarray(flatten_subset(v, spec)) for v in members])
    return model_def, spec, vectors


def _logits(model_def, spec, vectors):
    """f32[K, B, 10] eval-mode logits of each member on fixed inputs."""
    x = jnp.asarray(_data(32, 999)[0])
    base = unflatten_subset(jnp.asarray(vectors[0]), spec)
    return np.stack([np.asarray(model_def.apply(merge(base, unflatten_subset(jnp.asarray(v), spec)),
                                                x)) for v in vectors])


@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("name", MODELS)
def test_alignment_keeps_every_members_function_and_moves_it_closer(name, trained):
    model_def, spec, vectors = _zoo(name, trained)
    aligned = align_to_reference(vectors, spec, permutation_spec_for(model_def))
    assert aligned.shape == vectors.shape and aligned.dtype == np.float32
    # The networks changed (permuted), but not what they compute.
    assert not np.array_equal(aligned[1:], vectors[1:])
    before, after = _logits(model_def, spec, vectors), _logits(model_def, spec, aligned)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    # A permutation only reorders numbers.
    np.testing.assert_array_equal(np.sort(aligned, axis=1), np.sort(vectors, axis=1))
    np.testing.assert_array_equal(aligned[0], vectors[0])
    dist_before = np.linalg.norm(vectors[1:] - vectors[0], axis=1)
    dist_after = np.linalg.norm(aligned[1:] - vectors[0], axis=1)
    assert np.all(dist_after <= dist_before + 1e-6)
    assert dist_after.mean() < 0.97 * dist_before.mean()


@pytest.mark.parametrize("name", MODELS)
def test_merge_many_keeps_functions_and_tightens_the_zoo_around_its_mean(name):
    model_def, spec, vectors = _zoo(name, True)
    pspec = permutation_spec_for(model_def)
    to_first = align_to_reference(vectors, spec, pspec)
    merged = align_to_mean(vectors, spec, pspec)
    np.testing.assert_allclose(_logits(model_def, spec, merged),
                               _logits(model_def, spec, vectors), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.sort(merged, axis=1), np.sort(vectors, axis=1))
    spread = lambda v: np.linalg.norm(v - v.mean(0), axis=1).mean()
    assert spread(merged) <= spread(to_first) + 1e-6
    # A fixed point: each member is already matched to the mean of the others.
    for k in range(K):
        others = np.delete(merged, k, 0).mean(0)
        again = align_to_reference(np.stack([others, merged[k]]), spec, pspec)
        np.testing.assert_array_equal(again[1], merged[k])
    assert align_zoo(vectors, spec, model_def, method="merge_many").shape == vectors.shape


@pytest.mark.parametrize("name", MODELS)
def test_aligning_the_reference_to_itself_is_the_identity(name):
    model_def, spec, vectors = _zoo(name, True)
    copies = np.stack([vectors[2], vectors[2]])
    np.testing.assert_array_equal(
        align_to_reference(copies, spec, permutation_spec_for(model_def)), copies)


@pytest.mark.parametrize("name", MODELS)
def test_a_randomly_permuted_network_is_aligned_back_exactly(name):
    model_def, spec, vectors = _zoo(name, True)
    pspec = permutation_spec_for(model_def)
    rng = np.random.default_rng(7)
    perms = {g: rng.permutation(n) for g, n in pspec.sizes.items()}
    reference = {n: vectors[0][o:o + int(np.prod(s))].reshape(s)
                 for n, s, o in zip(spec.names, spec.shapes, spec.offsets, strict=True)}
    shuffled = apply_permutations(reference, pspec, perms)
    shuffled_vec = np.concatenate([shuffled[n].ravel() for n in spec.names])
    assert not np.array_equal(shuffled_vec, vectors[0])
    np.testing.assert_allclose(_logits(model_def, spec, shuffled_vec[None])[0],
                               _logits(model_def, spec, vectors[:1])[0], rtol=1e-5, atol=1e-5)
    aligned = align_to_reference(np.stack([vectors[0], shuffled_vec]), spec, pspec)
    np.testing.assert_array_equal(aligned[1], vectors[0])


def test_a_subset_zoo_cannot_be_aligned():
    model_def = get_model("cnn_bn", num_classes=10, input_shape=INPUT_SHAPE)
    variables = model_def.init(jax.random.key(0))
    spec = ParamSpec.from_variables(variables, model_def)
    with pytest.raises(ValueError, match="alignment needs entire networks"):
        align_to_reference(np.zeros((2, spec.size), np.float32), spec,
                           permutation_spec_for(model_def))


def test_unknown_architecture_is_refused_by_name():
    # ResNets have a spec now (test_resnet_permutations.py): an unregistered name.
    model_def = dataclasses.replace(get_model("mlp3", num_classes=10, input_shape=INPUT_SHAPE),
                                    name="my_mlp")
    with pytest.raises(ValueError, match="my_mlp"):
        permutation_spec_for(model_def)


def test_align_zoo_rejects_an_unknown_method():
    model_def, spec, vectors = _zoo("mlp3", False)
    with pytest.raises(ValueError, match=r"zoo\.align"):
        align_zoo(vectors, spec, model_def, method="git_rebasin")
    assert align_zoo(vectors, spec, model_def, method="none") is vectors


def test_seed_zoo_collected_with_alignment_keeps_accuracies(small_mnist, tmp_path,
                                                           mlp3_seed_zoo):
    """zoo.align = 'weight_matching' in collect_zoo: same members' accuracies, closer vectors."""
    zoos = {method: mlp3_seed_zoo(small_mnist, tmp_path / method, train_examples=1000,
                                  align=method)
            for method in ("none", "weight_matching")}
    plain, aligned = zoos["none"], zoos["weight_matching"]
    np.testing.assert_allclose(aligned.test_acc, plain.test_acc, atol=0.11)  # <= 1 of 1,000
    np.testing.assert_array_equal(aligned.vectors[0], plain.vectors[0])
    dist = {m: np.linalg.norm(z.vectors[1:] - z.vectors[0], axis=1).mean()
            for m, z in zoos.items()}
    assert dist["weight_matching"] < dist["none"]

