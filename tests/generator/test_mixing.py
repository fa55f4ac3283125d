"""Mixes of random member pairs (pdiff_jax.generator.mixing) and the latent prior trained
on them (``generator.diffusion.latent_mix``)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pdiff_jax.generator import default_generator_config, train_diffusion
from pdiff_jax.generator.mixing import mix_rows, pair_mix


def test_pair_mix_draws_a_permutation_and_weights_below_mix():
    partner, a = pair_mix(jax.random.key(0), jax.random.key(1), 64, 0.3, np.float32)
    assert sorted(np.asarray(partner).tolist()) == list(range(64))
    assert a.shape == (64, 1) and 0 <= float(a.min()) and float(a.max()) < 0.3
    assert float(a.std()) > 0.05   # drawn per row, not one weight for all


def test_mix_rows_blends_each_row_with_its_partner_in_any_rank():
    x = np.asarray(jax.random.normal(jax.random.key(2), (5, 3, 2)))
    partner, a = np.array([1, 0, 2, 4, 3]), np.array([[0.1], [0.5], [0.3], [0.0], [0.25]])
    out = np.asarray(mix_rows(x, partner, a))
    for i in range(5):
        np.testing.assert_allclose(out[i], (1 - a[i, 0]) * x[i] + a[i, 0] * x[partner[i]],
                                   rtol=1e-6)
    np.testing.assert_allclose(out[2], x[2], rtol=1e-6)   # its own partner: unchanged
    np.testing.assert_allclose(mix_rows(x[:, :, 0], partner, a), out[:, :, 0], rtol=1e-6)


def _train(latents, **kw):
    cfg = default_generator_config()
    return train_diffusion(latents, key=jax.random.key(1), process=cfg.diffusion.process,
                           model=dict(cfg.diffusion.model.to_dict(), channels=(8, 8)),
                           train=dict(cfg.diffusion.train.to_dict(), steps=3, batch_size=8,
                                      log_every=1), **kw)


def test_the_prior_trained_on_latent_mixes_records_it_and_learns_otherwise():
    latents = np.asarray(jax.random.normal(jax.random.key(3), (8, 4, 2)), np.float32)
    plain_arrays, plain_meta = _train(latents)
    mixed_arrays, mixed_meta = _train(latents, latent_mix=0.5)
    assert plain_meta["latent_mix"] == 0.0 and mixed_meta["latent_mix"] == 0.5
    leaves = zip(jax.tree.leaves(plain_arrays["params"]),
                 jax.tree.leaves(mixed_arrays["params"]), strict=True)
    assert any(not np.allclose(a, b) for a, b in leaves)   # other batches, other weights


def test_a_conditional_prior_refuses_latent_mixes():
    latents = np.zeros((8, 4, 2), np.float32)
    with pytest.raises(ValueError, match=r"latent_mix.*condition.kind='none'"):
        _train(latents, latent_mix=0.5, accuracies=np.linspace(90, 95, 8),
               condition=dict(default_generator_config().condition.to_dict(), kind="level",
                              levels=(0, 93, 100)))
