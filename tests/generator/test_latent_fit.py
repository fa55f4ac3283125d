"""Latent fits instead of diffusion (pdiff_jax.generator.latent_fit): a Gaussian and a
KDE fitted to the zoo's latents, sampled directly."""

import chex
import jax
import numpy as np
import pytest

from pdiff_jax.generator import latent_fit


def test_gaussian_fit_reproduces_mean_and_covariance():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6)) * 0.3
    latents = (rng.normal(size=(4000, 6)) @ A.T + np.arange(6)).reshape(4000, 3, 2)
    arrays, meta = latent_fit.fit_latents(latent_fit.GaussianFit(), latents)
    assert meta == {"K": 4000, "d": 6}
    z = latent_fit.sample_fit("gaussian", arrays, jax.random.key(1), 20000, (3, 2), clip=None)
    chex.assert_shape(z, (20000, 3, 2))
    flat = z.reshape(len(z), -1)
    np.testing.assert_allclose(flat.mean(0), latents.reshape(4000, -1).mean(0), atol=0.03)
    np.testing.assert_allclose(np.cov(flat, rowvar=False),
                               np.cov(latents.reshape(4000, -1), rowvar=False), atol=0.03)


def test_gaussian_fit_of_fewer_members_than_dimensions_is_proper():
    latents = np.random.default_rng(0).normal(size=(3, 4, 4))   # K = 3 < d = 16
    arrays, _ = latent_fit.fit_latents(latent_fit.GaussianFit(), latents)
    assert np.all(np.isfinite(arrays["chol"]))
    z = latent_fit.sample_fit("gaussian", arrays, jax.random.key(0), 5, (4, 4), clip=0.5)
    assert np.abs(z).max() <= 0.5


def test_kde_samples_sit_at_zoo_latents_within_the_bandwidth():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(10, 2, 4)).astype(np.float32)
    arrays, meta = latent_fit.fit_latents(latent_fit.KDEFit(bandwidth=1e-3), latents)
    assert meta["bandwidth_factor"] == 1e-3
    z = latent_fit.sample_fit("kde", arrays, jax.random.key(3), 50, (2, 4), clip=None)
    dist = np.linalg.norm(z.reshape(50, 1, -1) - latents.reshape(1, 10, -1), axis=-1).min(1)
    assert dist.max() < 0.02    # each sample is one member plus noise of std ~1e-3
    again = latent_fit.sample_fit("kde", arrays, jax.random.key(3), 50, (2, 4), clip=None)
    np.testing.assert_array_equal(z, again)   # a pure function of the key
    # Scott's rule when bandwidth = 0: K ** (-1 / (d + 4)).
    _, meta = latent_fit.fit_latents(latent_fit.KDEFit(), latents)
    assert meta["bandwidth_factor"] == pytest.approx(10 ** (-1 / 12))


# ----------------------------------------------------------------------------- autoencoders


# ----------------------------------------------------------------------------- suites
