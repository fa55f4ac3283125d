"""No autoencoder (pdiff_jax.generator.identity_ae): the latents are the parameters."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.generator.registry import build_autoencoder


def test_identity_autoencoder_round_trips_and_is_unbounded():
    ae = build_autoencoder(10, kind="identity", latent_channels=4, fold=32, hidden=(8,))
    x = jnp.arange(20.0).reshape(2, 10)
    variables = ae.init(jax.random.key(0), x)
    z = ae.apply(variables, x, method="encode")
    chex.assert_shape(z, (2, 3, 4))                     # ceil(10 / 4) = 3, zero-padded
    np.testing.assert_array_equal(z.reshape(2, -1)[:, 10:], 0.0)
    np.testing.assert_array_equal(ae.apply(variables, z, method="decode"), x)
    assert ae.latent_bound == np.inf
