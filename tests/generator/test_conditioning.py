"""Accuracy-conditioned generation (pdiff_jax.generator.conditioning): the condition
settings and embedding, classifier-free guidance, the conditional training stage and
sampling each level. The config section, the per-level report and the accuracy-spread
zoo are tested with their modules (config/test_check.py, evaluation/test_conditional.py,
zoo/test_collect.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax import artifacts
from pdiff_jax.config import check as config_check
from pdiff_jax.generator import (
    SamplerSettings,
    conditioning,
    default_generator_config,
    load_generator,
    train_autoencoder,
    train_diffusion,
)
from pdiff_jax.generator.conditioning import ConditionSettings, guided_eps_fn
from pdiff_jax.generator.denoiser import UNet1D
from pdiff_jax.generator.registry import build_denoiser as build

DDIM = SamplerSettings("ddim", 20)
LEVELS = (0.0, 70.0, 100.0)   # two levels: [0, 70), [70, 100]


# ----------------------------------------------------------------------------- settings


def test_levels_label_members_and_outsiders_are_null():
    s = ConditionSettings(kind="level", levels=(75, 85, 90, 92, 95))
    acc = np.array([70.0, 75.0, 84.99, 85.0, 91.0, 92.0, 95.0, 96.0])
    np.testing.assert_array_equal(s.level_of(acc), [-1, 0, 0, 1, 2, 3, 3, -1])
    np.testing.assert_array_equal(s.labels(acc), [-1, 0, 0, 1, 2, 3, 3, -1])
    v = ConditionSettings(kind="value", levels=(75, 85, 90, 92, 95))
    np.testing.assert_allclose(v.labels(acc), [-1, .75, .8499, .85, .91, .92, .95, -1],
                               rtol=1e-6)
    assert s.request(2) == 2.0 and v.request(2) == 91.0


def test_condition_kinds_match_the_config_check():
    assert config_check.CONDITION_KINDS == conditioning.KINDS
    assert config_check.CONDITION_ON == conditioning.ON
    assert set(default_generator_config().condition.to_dict()) == {
        f.name for f in __import__("dataclasses").fields(ConditionSettings)}


# ----------------------------------------------------------------------------- network


@pytest.fixture(scope="module")
def unet():
    model = UNet1D(channels=(8, 8), time_dim=16, condition="level", num_levels=3)
    x = jax.random.normal(jax.random.key(0), (5, 4, 2))
    t = jnp.array([0, 3, 10, 50, 99])
    params = model.init(jax.random.key(1), x, t, jnp.zeros(5))["params"]
    # the output layer starts at zero: perturb every weight so outputs depend on c
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape),
                          params)
    return model, params, x, t


def test_condition_changes_the_prediction_and_null_is_its_own(unet):
    model, params, x, t = unet
    apply = lambda c: model.apply({"params": params}, x, t, c)
    e0, e1 = apply(jnp.zeros(5)), apply(jnp.ones(5))
    assert float(jnp.abs(e0 - e1).max()) > 1e-3
    np.testing.assert_array_equal(apply(None), apply(jnp.full(5, -1.0)))
    assert float(jnp.abs(apply(None) - e0).max()) > 1e-3


def test_guidance_scale_zero_is_the_unconditional_model(unet):
    model, params, x, t = unet
    apply = lambda x, t, c: model.apply({"params": params}, x, t, c)
    uncond = apply(x, t, None)
    guided0 = guided_eps_fn(apply, jnp.full(5, 2.0), 0.0)(x, t)
    np.testing.assert_allclose(guided0, uncond, atol=1e-5)
    # scale 1 is the conditional model; scale 3 extrapolates past it
    cond = apply(x, t, jnp.full(5, 2.0))
    np.testing.assert_allclose(guided_eps_fn(apply, jnp.full(5, 2.0), 1.0)(x, t), cond,
                               atol=1e-6)
    np.testing.assert_allclose(guided_eps_fn(apply, jnp.full(5, 2.0), 3.0)(x, t),
                               uncond + 3 * (cond - uncond), atol=1e-4)


def test_value_condition_and_paper_denoiser_refuses_a_condition():
    model = build("unet", channels=(8, 8), time_dim=16, condition="value")
    x, t = jnp.zeros((2, 4, 2)), jnp.array([1, 2])
    params = model.init(jax.random.key(0), x, t, jnp.array([0.8, 0.9]))["params"]
    assert "null" in params["ConditionEmbedding_0"]
    with pytest.raises(ValueError, match="unconditional"):
        build("paper", condition="level", num_levels=4)


# ----------------------------------------------------------------------------- stages


def _config(kind="level"):
    cfg = default_generator_config()
    cfg.normalization.mode = "tensor"
    cfg.autoencoder.model.update(kind="fc", hidden=(32,), latent_len=2, latent_channels=2,
                                 latent_noise=0.05, input_noise=0.0)
    cfg.autoencoder.train.update(steps=150, batch_size=32, learning_rate=1e-2,
                                 checkpoint_every=10**6)
    cfg.diffusion.process.num_timesteps = 100
    cfg.diffusion.model.update(channels=(16, 16), time_dim=16)
    cfg.diffusion.train.update(steps=500, batch_size=32, learning_rate=3e-3,
                               checkpoint_every=10**6)
    cfg.condition.update(kind=kind, levels=LEVELS, dropout=0.2)
    return cfg


def two_cluster_zoo(K=32, D=24, seed=0):
    """Half the members near +1 with accuracy 90, half near -1 with accuracy 40."""
    rng = np.random.default_rng(seed)
    sign = np.where(np.arange(K) % 2 == 0, 1.0, -1.0)
    zoo = sign[:, None] + 0.05 * rng.normal(size=(K, D))
    acc = np.where(sign > 0, 90.0, 40.0) + rng.uniform(-2, 2, K)
    return zoo.astype(np.float32), acc.astype(np.float32), sign


@pytest.fixture(scope="module", params=["level", "value"])
def conditional_generator(request, tmp_path_factory):
    wd = tmp_path_factory.mktemp(f"cond_{request.param}")
    zoo, acc, sign = two_cluster_zoo()
    cfg = _config(request.param)
    ae_arrays, ae_meta = train_autoencoder(
        zoo, key=jax.random.key(0), normalization=cfg.normalization,
        model=cfg.autoencoder.model, train=cfg.autoencoder.train)
    artifacts.save_artifact(artifacts.artifact_dir(wd, artifacts.AUTOENCODER), ae_arrays,
                            ae_meta)
    arrays, meta = train_diffusion(
        ae_arrays["latents"], key=jax.random.key(1), process=cfg.diffusion.process,
        model=cfg.diffusion.model, train=cfg.diffusion.train, condition=cfg.condition,
        accuracies=acc)
    artifacts.save_artifact(artifacts.artifact_dir(wd, artifacts.DIFFUSION), arrays, meta)
    return load_generator(wd), zoo, sign, meta


def test_condition_is_stored_and_rebuilt(conditional_generator):
    gen, _, _, meta = conditional_generator
    assert meta["condition"]["members_per_level"] == [16, 16]
    assert gen.condition.enabled and gen.condition.num_levels == 2


def test_same_key_and_condition_give_the_same_samples(conditional_generator):
    gen = conditional_generator[0]
    c = gen.condition.request(1)
    a = gen.sample(jax.random.key(3), 8, DDIM, condition=c)
    b = gen.sample(jax.random.key(3), 8, DDIM, condition=c)
    np.testing.assert_array_equal(a, b)
    other = gen.sample(jax.random.key(3), 8, DDIM, condition=gen.condition.request(0))
    assert np.abs(a - other).max() > 0.1


def test_samples_land_in_the_requested_cluster(conditional_generator):
    gen = conditional_generator[0]
    for level, want in ((0, -1.0), (1, 1.0)):   # level 0: accuracy 40 (-1); level 1: 90 (+1)
        out = gen.sample(jax.random.key(4), 16, DDIM, condition=gen.condition.request(level),
                         guidance_scale=3.0)   # guidance sharpens a briefly trained model
        got = np.sign(out.mean(1))
        assert (got == want).mean() >= 0.9, (level, got)


def test_guidance_zero_sampling_equals_unconditional_sampling(conditional_generator):
    gen = conditional_generator[0]
    uncond = gen.sample_latents(jax.random.key(5), 8, DDIM)
    guided0 = gen.sample_latents(jax.random.key(5), 8, DDIM, condition=gen.condition.request(1),
                                 guidance_scale=0.0)
    np.testing.assert_allclose(guided0, uncond, atol=1e-4)


def test_bad_conditions_are_refused(conditional_generator):
    gen = conditional_generator[0]
    bad = 5 if gen.condition.kind == "level" else 150.0
    with pytest.raises(ValueError, match="condition must be"):
        gen.sample(jax.random.key(0), 2, DDIM, condition=bad)
    with pytest.raises(ValueError, match="guidance_scale"):
        gen.sample(jax.random.key(0), 2, DDIM, condition=gen.condition.request(0),
                   guidance_scale=-1.0)


def test_conditional_training_needs_labelled_members():
    from pdiff_jax.errors import MismatchError

    cfg = _config()
    latents = np.zeros((4, 2, 2), np.float32)
    for acc, match in ((None, "one accuracy per zoo member"),
                       (np.full(4, 100.5, np.float32), "no zoo member lies")):
        with pytest.raises(MismatchError, match=match):
            train_diffusion(latents, key=jax.random.key(0), process=cfg.diffusion.process,
                            model=cfg.diffusion.model, train=cfg.diffusion.train,
                            condition=cfg.condition, accuracies=acc)


# ----------------------------------------------------------------------------- sampling


def test_sample_stage_draws_each_level_with_the_given_guidance(conditional_generator):
    from pdiff_jax.generator.trained import sample_and_decode

    gen = conditional_generator[0]
    key = jax.random.key(6)
    arrays, meta = sample_and_decode(gen, key, DDIM, n=3, guidance_scale=0.0)
    np.testing.assert_array_equal(arrays["condition_level"], [0, 0, 0, 1, 1, 1])
    assert meta["condition"]["guidance_scale"] == 0.0
    # scale 0: each level's draw is the unconditional model with that level's key
    for i in range(2):
        np.testing.assert_allclose(arrays["latents"][3 * i:3 * i + 3],
                                   gen.sample_latents(jax.random.fold_in(key, 1000 + i), 3,
                                                      DDIM), atol=1e-4)
