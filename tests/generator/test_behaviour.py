"""Tests for pdiff_jax.generator.behaviour: the autoencoder's behavioural term."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.generator import default_generator_config, train_autoencoder
from pdiff_jax.generator.behaviour import (
    Behaviour,
    BehaviourSettings,
    behaviour_loss,
    behaviour_targets,
    logits_of,
    mixed_targets,
    teacher_logits,
)
from pdiff_jax.generator.normalize import fit_normalizer, normalize
from pdiff_jax.generator.train import TrainSettings, run_generator_loop
from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset


@pytest.fixture(scope="module")
def tiny():
    """Eight MLPs on 6x6 inputs (D = 36*4 + 4 + 4*3 + 3 + 3*10 + 10 = 203) and 16 images."""
    model_def = get_model("mlp3", num_classes=10, input_shape=(6, 6, 1), hidden=(4, 3))
    members = [model_def.init(jax.random.key(i)) for i in range(8)]
    spec = ParamSpec.from_variables(members[0], ".*")
    vectors = np.stack([np.asarray(flatten_subset(v, spec)) for v in members])
    images = np.asarray(jax.random.normal(jax.random.key(9), (16, 6, 6, 1)))
    behaviour = Behaviour(model_def, spec, None, BehaviourSettings(members=4, weight=1.0))
    return behaviour, members[0], vectors, images


def _small_autoencoder(**train) -> dict:
    """train_autoencoder's keyword arguments for a 6-step fc autoencoder."""
    cfg = default_generator_config()
    cfg.autoencoder.model.update(kind="fc", hidden=(16,), latent_len=4, latent_channels=2)
    cfg.autoencoder.train.update(steps=6, batch_size=8, log_every=3, **train)
    return dict(key=jax.random.key(0), normalization=cfg.normalization,
                model=cfg.autoencoder.model, train=cfg.autoencoder.train)


def test_teacher_logits_are_each_members_own(tiny):
    behaviour, base, vectors, images = tiny
    logits = teacher_logits(behaviour, base, vectors, images, chunk=3)
    assert logits.shape == (8, 16, 10)
    np.testing.assert_allclose(teacher_logits(behaviour, base, vectors, images, chunk=3,
                                              image_chunk=5), logits, rtol=1e-5, atol=1e-6)
    from pdiff_jax.params.subset import merge, unflatten_subset
    own = behaviour.model_def.apply(merge(base, unflatten_subset(vectors[5], behaviour.spec)),
                                    images)
    np.testing.assert_allclose(logits[5], own, rtol=1e-5, atol=1e-5)


def test_a_loop_over_the_networks_gives_the_vmaps_logits(tiny):
    behaviour, base, vectors, images = tiny
    args = (behaviour.model_def, behaviour.spec, None, base, vectors, images)
    np.testing.assert_allclose(logits_of(*args, vectorize="loop"), logits_of(*args),
                               rtol=1e-5, atol=1e-6)


def test_the_term_is_zero_for_exact_copies_and_positive_otherwise(tiny):
    behaviour, base, vectors, images = tiny
    norm = fit_normalizer(vectors, components=0)
    data = {"normalizer": norm, "base": base, "inputs": images}
    teacher = teacher_logits(behaviour, base, vectors, images)
    exact = behaviour_loss(behaviour, normalize(norm, vectors), teacher, data)
    assert float(exact) == pytest.approx(0.0, abs=1e-6)
    swapped = behaviour_loss(behaviour, normalize(norm, vectors[::-1]), teacher, data)
    assert float(swapped) > 1e-3


def test_train_autoencoder_with_the_term_records_it_and_stays_finite(tiny):
    behaviour, base, vectors, images = tiny
    kw = _small_autoencoder()
    plain_arrays, plain_meta = train_autoencoder(vectors, **kw)
    arrays, meta = train_autoencoder(vectors, behaviour=behaviour,
                                     behaviour_inputs=(base, images), **kw)
    assert meta["behaviour"] == {"weight": 1.0, "members": 4, "mix": 0.0, "target": "members",
                                 "images_per_step": 0, "vectorize": "vmap", "warmup": 0.0,
                                 "ramp": 0.0, "learning_rate": 0.0, "images": 16,
                                 "batch_statistics": False}
    assert plain_meta["behaviour"] is None
    assert np.isfinite(arrays["latents"]).all()
    # The term changes the gradient, so the trained weights differ.
    assert not np.allclose(jax.tree.leaves(arrays["params"])[0],
                           jax.tree.leaves(plain_arrays["params"])[0])
    # Four of the 16 images a step: another gradient again, and the meta says so.
    few = dataclasses.replace(
        behaviour, settings=dataclasses.replace(behaviour.settings, images_per_step=4))
    few_arrays, few_meta = train_autoencoder(vectors, behaviour=few,
                                             behaviour_inputs=(base, images), **kw)
    assert few_meta["behaviour"]["images_per_step"] == 4 and few_meta["behaviour"]["images"] == 16
    assert np.isfinite(few_arrays["latents"]).all()
    assert not np.allclose(jax.tree.leaves(few_arrays["params"])[0],
                           jax.tree.leaves(arrays["params"])[0])


def _with(behaviour, **settings):
    return dataclasses.replace(behaviour,
                               settings=dataclasses.replace(behaviour.settings, **settings))


def test_the_warm_up_holds_the_term_off_then_ramps_it_to_full_weight(tiny):
    behaviour = tiny[0]
    ramped = dataclasses.replace(_with(behaviour, warmup=0.5, ramp=0.25), steps=8)
    assert [float(ramped.scale_at(s)) for s in range(8)] == [0, 0, 0, 0, 0.5, 1, 1, 1]
    sudden = dataclasses.replace(_with(behaviour, warmup=0.5), steps=8)
    assert [float(sudden.scale_at(s)) for s in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_term_still_in_its_warm_up_trains_the_plain_autoencoder(tiny):
    behaviour, base, vectors, images = tiny
    kw = dict(_small_autoencoder(), behaviour_inputs=(base, images))
    plain, _ = train_autoencoder(vectors, **{**kw, "behaviour_inputs": None})
    waiting, meta = train_autoencoder(vectors, behaviour=_with(behaviour, warmup=0.99), **kw)
    late, _ = train_autoencoder(vectors, behaviour=_with(behaviour, warmup=0.5), **kw)
    assert meta["behaviour"]["warmup"] == 0.99
    first = jax.tree.leaves(plain["params"])[0]
    np.testing.assert_allclose(jax.tree.leaves(waiting["params"])[0], first, atol=1e-6)
    # From step 3 on the term is on: another gradient, other weights.
    assert not np.allclose(jax.tree.leaves(late["params"])[0], first, atol=1e-4)


@pytest.mark.parametrize("per_call", [1, 4])
def test_each_step_runs_its_own_function_across_the_warm_ups_end(per_call):
    """Six steps, the first three in the warm-up: with four steps a call the first call
    straddles step 3 and must still run the warm-up function for steps 0-2 only."""
    def counting(add):
        def step(state, data, key):
            return {"total": state["total"] + add}, jnp.float32(add)
        return step

    settings = TrainSettings(steps=6, log_every=1, steps_per_dispatch=per_call)
    state = run_generator_loop(counting(1.0), {"total": jnp.float32(0)}, None,
                               jax.random.key(0), settings, ckpt_dir=None, desc="t",
                               first_steps=(3, counting(100.0)))
    assert float(state["total"]) == 303.0


def test_the_terms_own_learning_rate_takes_over_when_the_warm_up_ends(tiny):
    behaviour, base, vectors, images = tiny
    kw = dict(_small_autoencoder(weight_decay=0.0), behaviour_inputs=(base, images))
    first_half, _ = train_autoencoder(vectors, **{**kw, "behaviour_inputs": None,
                                                  "train": {**kw["train"], "steps": 3}})
    # Three plain steps, then three at a rate too small to move anything.
    frozen, meta = train_autoencoder(
        vectors, behaviour=_with(behaviour, warmup=0.5, learning_rate=1e-12), **kw)
    assert meta["behaviour"]["learning_rate"] == 1e-12
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), frozen["params"],
                 first_half["params"])
    moving, _ = train_autoencoder(vectors, behaviour=_with(behaviour, warmup=0.5), **kw)
    assert not np.allclose(jax.tree.leaves(moving["params"])[0],
                           jax.tree.leaves(first_half["params"])[0], atol=1e-4)


def test_mixed_targets_are_the_pair_ensemble_of_the_mixed_latents():
    # Mixes (1 - a) z_i + a z_j with a in [0, mix], each against (1 - a) p_i + a p_j.
    latents = np.asarray(jax.random.normal(jax.random.key(1), (6, 4, 2)))
    teacher = np.asarray(jax.random.normal(jax.random.key(2), (6, 5, 10))) * 3
    mixed, target = mixed_targets(latents, teacher, jax.random.key(3), mix=0.5)
    p = np.asarray(jax.nn.softmax(teacher, axis=-1))
    probs = np.exp(np.asarray(target))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    for i in range(6):   # recover each row's partner and weight from the latents
        for j in range(6):
            diff = latents[j] - latents[i]
            a = float(np.sum((mixed[i] - latents[i]) * diff) / max(np.sum(diff * diff), 1e-12))
            if j != i and np.allclose(mixed[i], (1 - a) * latents[i] + a * latents[j],
                                      atol=1e-5) and 0 <= a <= 0.5:
                np.testing.assert_allclose(probs[i], (1 - a) * p[i] + a * p[j], atol=1e-5)
                break
        else:   # a row mixed with itself keeps its own latent and probabilities
            np.testing.assert_allclose(mixed[i], latents[i], atol=1e-6)
            np.testing.assert_allclose(probs[i], p[i], atol=1e-5)
    assert not np.allclose(mixed, latents)


def test_mix_zero_weight_targets_are_the_members_own():
    latents = np.zeros((3, 2, 2), np.float32) + np.arange(3, dtype=np.float32)[:, None, None]
    teacher = np.asarray(jax.random.normal(jax.random.key(2), (3, 4, 10)))
    mixed, target = mixed_targets(latents, teacher, jax.random.key(0), mix=1e-9)
    np.testing.assert_allclose(mixed, latents, atol=1e-6)
    np.testing.assert_allclose(target, jax.nn.log_softmax(teacher, axis=-1), atol=1e-5)


def test_label_targets_are_a_cross_entropy_to_the_labels(tiny):
    behaviour, base, vectors, images = tiny
    labels = np.arange(16) % 10
    on_labels = dataclasses.replace(
        behaviour, settings=dataclasses.replace(behaviour.settings, target="labels"))
    target = behaviour_targets(on_labels, base, vectors, images, labels)
    assert target.shape == (1, 16, 10)   # one row that every member shares
    assert (np.exp(target).argmax(-1) == labels).all()
    np.testing.assert_allclose(np.exp(target).sum(-1), 1.0, rtol=1e-5)
    # KL to the smoothed labels ranks networks as their cross-entropy does: members whose
    # logits favour the labels score lower.
    norm = fit_normalizer(vectors, components=0)
    data = {"normalizer": norm, "base": base, "inputs": images}
    loss = [float(behaviour_loss(on_labels, normalize(norm, vectors[i:i + 1]), target[:1], data))
            for i in range(8)]
    logits = teacher_logits(behaviour, base, vectors, images)
    ce = -np.take_along_axis(np.asarray(jax.nn.log_softmax(logits, -1)),
                             np.broadcast_to(labels[None, :, None], (8, 16, 1)), -1).mean((1, 2))
    assert np.argsort(loss).tolist() == np.argsort(ce).tolist()
    with pytest.raises(ValueError, match="needs the images' labels"):
        behaviour_targets(on_labels, base, vectors, images)


def test_a_decoded_negative_batch_norm_variance_leaves_the_logits_finite():
    model_def = get_model("cnn_bn", num_classes=10, input_shape=(8, 8, 1))
    variables = model_def.init(jax.random.key(0))
    spec = ParamSpec.from_variables(variables, ".*")
    vector = np.asarray(flatten_subset(variables, spec))
    negative = jax.tree_util.tree_map_with_path(
        lambda path, leaf: -np.ones_like(leaf) if path[-1].key == "var" else leaf,
        variables["batch_stats"])
    broken = np.asarray(flatten_subset(dict(variables, batch_stats=negative), spec))
    assert not np.allclose(broken, vector)
    images = np.asarray(jax.random.normal(jax.random.key(1), (4, 8, 8, 1)))
    raw = model_def.apply(dict(variables, batch_stats=negative), images)
    assert not np.isfinite(np.asarray(raw)).all()          # what the term would have seen
    logits = logits_of(model_def, spec, None, variables, np.stack([vector, broken]), images)
    assert np.isfinite(np.asarray(logits)).all()
    np.testing.assert_allclose(logits[0], model_def.apply(variables, images), rtol=1e-5,
                               atol=1e-5)


def test_batch_statistics_run_decoded_bn_networks_as_they_train():
    model_def = get_model("cnn_bn", num_classes=10, input_shape=(8, 8, 1))
    variables = model_def.init(jax.random.key(0))
    spec = ParamSpec.from_variables(variables, ".*")
    vector = np.asarray(flatten_subset(variables, spec))[None]
    images = np.asarray(jax.random.normal(jax.random.key(1), (4, 8, 8, 1))) * 3 + 1
    trained_mode = logits_of(model_def, spec, None, variables, vector, images,
                             batch_statistics=True)[0]
    np.testing.assert_allclose(trained_mode, model_def.apply(variables, images, train=True)[0],
                               rtol=1e-5, atol=1e-5)
    # Running statistics (fresh: mean 0, variance 1) are not these images' statistics.
    assert not np.allclose(trained_mode, logits_of(model_def, spec, None, variables, vector,
                                                   images)[0], atol=1e-3)


@pytest.mark.parametrize("selector, split, expected", [
    (".*", None, True),                  # an entire BatchNorm network: as it trains
    (".*bn2.*", "bn2", False),           # a subset on a frozen network: running statistics
])
def test_the_pipeline_picks_batch_statistics_for_entire_bn_networks(selector, split,
                                                                     expected):
    from types import SimpleNamespace

    from pdiff_jax.config.defaults import get_config
    from pdiff_jax.pipeline import _behaviour

    model_def = get_model("cnn_bn", num_classes=10, input_shape=(8, 8, 1))
    variables = model_def.init(jax.random.key(0))
    config = get_config()
    config.generator.autoencoder.behaviour.update(weight=1.0, images=4, target="labels")
    zoo = SimpleNamespace(spec=ParamSpec.from_variables(variables, selector), base=variables,
                          split_point=split)
    images = np.zeros((6, 8, 8, 1), np.float32)
    run = SimpleNamespace(config=config, zoo=zoo, model_def=model_def, mesh=None,
                          dataset=SimpleNamespace(x_train=images, y_train=np.arange(6)))
    behaviour, (_, _, labels) = _behaviour(run)
    assert behaviour.batch_statistics is expected
    assert labels.tolist() == [0, 1, 2, 3]
