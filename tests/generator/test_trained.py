"""The trained generator (pdiff_jax.generator.trained): loaded from a workdir's
artifacts, sampling, encoding and decoding, and the checks that it fits a zoo."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from pdiff_jax.generator import SamplerSettings, TrainedGenerator, load_generator
from pdiff_jax.generator.autoencoder import FCAutoencoder
from pdiff_jax.runtime.checkpoint import CheckpointError, restore_pytree

D = 64  # tiny_zoo's vectors
DDIM10, DDIM5 = SamplerSettings("ddim", 10), SamplerSettings("ddim", 5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_zoo, tiny_config, ae_stage, diffusion_stage):
    wd = tmp_path_factory.mktemp("gen")
    zoo, base, basis = tiny_zoo()
    logs = []
    cfg = tiny_config()
    ae_stage(zoo, config=cfg, workdir=wd, key=jax.random.key(0),
             metrics_fn=lambda s, r: logs.append((s, r)))
    diffusion_stage(config=cfg, workdir=wd, key=jax.random.key(1),
                    metrics_fn=lambda s, r: logs.append((s, r)))
    return wd, zoo, base, basis, logs


def test_training_learns_and_samples_land_near_the_zoo(trained):
    wd, zoo, base, basis, logs = trained
    ae = [r["loss"] for s, r in logs if r["stage"] == "autoencoder" and "loss" in r]
    df = [r["loss"] for s, r in logs if r["stage"] == "diffusion"]
    assert ae[-1] < 0.3 * ae[0] and df[-1] < 0.7 * df[0]
    gen = load_generator(wd)
    assert gen.D == D and gen.meta["rel_recon_error_normalized"] < 0.3
    assert gen.meta["rel_recon_error"] < 0.05
    samples = gen.sample(jax.random.key(0), 64)
    assert samples.shape == (64, D) and np.all(np.isfinite(samples))
    # Samples lie in the zoo's 2-D affine subspace and within its range of coefficients.
    coef = (samples - base) @ np.linalg.pinv(0.1 * basis)
    resid = samples - base - coef @ (0.1 * basis)
    spread = np.linalg.norm(zoo - zoo.mean(0), axis=1).mean()
    assert np.linalg.norm(resid, axis=1).mean() < 0.3 * spread
    assert np.all(np.abs(coef) < 1.6)
    assert coef.std(0).min() > 0.25  # not collapsed to a point (uniform(-1, 1) std: 0.58)
    noise_dist = np.linalg.norm(np.random.default_rng(0).normal(size=(64, D)) * zoo.std(0)
                                + zoo.mean(0) - base, axis=1).mean()
    assert np.linalg.norm(samples - zoo.mean(0), axis=1).mean() < noise_dist


def test_generator_api(trained):
    wd, zoo, *_ = trained
    gen = load_generator(wd)
    z = gen.encode(zoo[:5])
    assert z.shape == (5, *gen.latent_shape) and np.all(np.abs(z) <= 1.0)
    np.testing.assert_allclose(z, gen.zoo_latents[:5], atol=1e-6)
    assert gen.decode(z).shape == (5, D)
    a = gen.sample(jax.random.key(3), 4, DDIM10)
    b = gen.sample(jax.random.key(3), 4, DDIM10)
    np.testing.assert_array_equal(a, b)
    c = gen.sample(jax.random.key(4), 4, DDIM10)
    assert not np.allclose(a, c)
    z3, traj = gen.sample_latents(jax.random.key(3), 4, DDIM10, return_trajectory=True)
    v = gen.decode(z3)
    np.testing.assert_allclose(v, a, atol=1e-6)
    assert traj.shape == (11, 4, *gen.latent_shape)
    for n in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            gen.sample(jax.random.key(0), n)
    with pytest.raises(ValueError, match="sampler"):
        SamplerSettings(sampler="euler")
    with pytest.raises(ValueError, match="ddpm runs all T"):
        gen.sample(jax.random.key(0), 2, SamplerSettings("ddpm", 10))


def test_latent_mix_sampling_decodes_a_mix_of_two_prior_samples(trained):
    wd, *_ = trained
    gen = load_generator(wd)
    mixed = dataclasses.replace(DDIM10, latent_mix=0.3)
    pairs = gen.sample_latents(jax.random.key(5), 6, DDIM10)   # the 2n draws of n = 3
    z = gen.sample_latents(jax.random.key(5), 3, mixed)
    np.testing.assert_allclose(z, 0.7 * pairs[:3] + 0.3 * pairs[3:], atol=1e-6)
    np.testing.assert_allclose(gen.sample(jax.random.key(5), 3, mixed), gen.decode(z),
                               atol=1e-6)
    with pytest.raises(ValueError, match="no single trajectory"):
        gen.sample_latents(jax.random.key(5), 3, mixed, return_trajectory=True)
    with pytest.raises(ValueError, match=r"latent_mix must be in \[0, 1\)"):
        SamplerSettings(latent_mix=1.0)


def test_compatibility_checks(trained):
    wd, zoo, *_ = trained
    gen = load_generator(wd)
    gen.check_compatible(D, vectors=zoo)
    with pytest.raises(ValueError, match="D = 64"):
        gen.check_compatible(D + 1)
    with pytest.raises(ValueError, match="fingerprint"):
        gen.check_compatible(D, vectors=zoo + 1.0)
    with pytest.raises(ValueError, match="D = 64"):
        gen.encode(np.zeros((2, D + 3), np.float32))


def test_finished_stages_are_skipped(trained, tiny_config, ae_stage, diffusion_stage):
    wd, zoo, *_ = trained
    before = restore_pytree(wd / "autoencoder" / "arrays")["params"]
    calls = []
    ae_stage(zoo * 0 + 5, config=tiny_config(), workdir=wd, key=jax.random.key(9),
             metrics_fn=lambda s, r: calls.append(s))
    diffusion_stage(config=tiny_config(), workdir=wd, key=jax.random.key(9),
                    metrics_fn=lambda s, r: calls.append(s))
    assert calls == []
    after = restore_pytree(wd / "autoencoder" / "arrays")["params"]
    jax.tree.map(np.testing.assert_array_equal, before, after)


def test_load_generator_errors_name_the_command(tmp_path):
    with pytest.raises(CheckpointError, match="--stages=autoencoder,diffusion"):
        load_generator(tmp_path)


def test_missing_diffusion_is_reported(trained, tmp_path, tiny_config, diffusion_stage):
    wd = trained[0]
    os.symlink(wd / "autoencoder", tmp_path / "autoencoder")
    with pytest.raises(CheckpointError, match="--stages=diffusion"):
        load_generator(tmp_path)
    gen = load_generator(tmp_path, require_diffusion=False)
    assert isinstance(gen, TrainedGenerator) and gen.encode(trained[1][:2]).shape[0] == 2
    with pytest.raises(CheckpointError, match="no finished autoencoder"):
        diffusion_stage(config=tiny_config(), workdir=tmp_path / "nothing", key=jax.random.key(0))


# -- the fully-connected autoencoder (kind='fc') ---------------------------------------


@pytest.fixture(scope="module")
def fc_trained(tmp_path_factory, fc_config, ae_stage, diffusion_stage):
    """K = 16 independent random vectors (no shared structure): only memorizing works."""
    wd = tmp_path_factory.mktemp("fc")
    zoo = np.random.default_rng(5).normal(size=(16, 96)).astype(np.float32)
    cfg = fc_config()
    cfg.autoencoder.train.batch_size = 16
    cfg.diffusion.train.batch_size = 16
    ae_stage(zoo, config=cfg, workdir=wd, key=jax.random.key(0))
    diffusion_stage(config=cfg, workdir=wd, key=jax.random.key(1))
    return wd, zoo


def test_fc_autoencoder_reproduces_independent_vectors(fc_trained):
    wd, zoo = fc_trained
    gen = load_generator(wd)
    recon = gen.decode(gen.encode(zoo))
    err = np.linalg.norm(recon - zoo, axis=1)
    mean_err = np.linalg.norm(zoo - zoo.mean(0), axis=1)
    assert err.mean() < 0.5 * mean_err.mean()  # far better than predicting the mean
    # each reconstruction is nearest to its own original
    d = np.linalg.norm(recon[:, None] - zoo[None], axis=-1)
    assert np.all(d.argmin(1) == np.arange(len(zoo)))


def test_fc_generator_round_trips_through_save_and_load(fc_trained):
    wd, zoo = fc_trained
    gen = load_generator(wd)
    assert isinstance(gen.ae, FCAutoencoder) and gen.latent_shape == (4, 2)
    meta = json.loads((wd / "autoencoder" / "meta.json").read_text())
    assert meta["geometry"]["kind"] == "fc"
    assert meta["model"]["kind"] == "fc"
    np.testing.assert_allclose(gen.encode(zoo), gen.zoo_latents, atol=1e-6)
    s = gen.sample(jax.random.key(0), 3, DDIM5)
    assert s.shape == (3, 96) and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, load_generator(wd).sample(jax.random.key(0), 3, DDIM5))
