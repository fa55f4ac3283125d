"""Diagnostics of a trained autoencoder (pdiff_jax.generator.diagnostics): which latent
dimensions vary, and the accuracy of the zoo decoded from its latents."""

import numpy as np

from pdiff_jax.generator.diagnostics import (
    latent_diagnostics,
    reconstruction_accuracy,
    reconstruction_gap,
)


def test_latent_diagnostics_count_the_dimensions_that_vary():
    rng = np.random.default_rng(0)
    z = np.zeros((200, 2, 3), np.float32)
    z[:, 0, 0] = rng.normal(0, 0.5, 200)      # informative
    z[:, 0, 1] = rng.normal(0, 0.05, 200)     # varies, but below the latent noise
    z[:, 1, 2] = 0.3                          # constant
    out = latent_diagnostics(z, latent_noise=0.1)
    assert out["latent_dims"] == 6
    assert out["latent_dims_varying"] == 2
    assert out["latent_dims_above_noise"] == 1
    assert out["latent_std_min"] == 0.0
    assert 0.4 < out["latent_std_max"] < 0.6
    assert latent_diagnostics(z)["latent_dims_above_noise"] == 2   # no noise: same as varying


def test_reconstruction_accuracy_measures_the_decoded_zoo():
    latents = np.arange(5, dtype=np.float32)[:, None]
    decoded = []
    out = reconstruction_accuracy(lambda z: decoded.append(z) or np.repeat(z, 3, 1), latents,
                                  lambda v: v[:, 0] * 10.0)
    assert decoded[0] is latents
    assert out == {"recon_test_acc_best": 40.0, "recon_test_acc_median": 20.0,
                   "recon_test_acc_min": 0.0, "recon_test_acc_mean": 20.0}


def test_a_collapsed_autoencoder_is_named_with_the_fix():
    zoo_acc = np.array([97.0, 97.4, 97.8])
    assert reconstruction_gap({"recon_test_acc_median": 97.3}, zoo_acc) is None
    assert reconstruction_gap({"recon_test_acc_median": 92.5}, zoo_acc) is None   # 4.9 below
    warning = reconstruction_gap({"recon_test_acc_median": 29.92, "rel_recon_error": 0.79},
                                 zoo_acc)
    assert "29.92 % against the zoo's 97.40 %" in warning
    assert "behaviour.weight" in warning and "0.79" in warning
    assert reconstruction_gap({}, zoo_acc) is None     # no copies measured: nothing to say
