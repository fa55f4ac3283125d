"""The variational autoencoder (pdiff_jax.generator.vae): its loss is the plain one plus
the weighted KL divergence."""

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.generator.registry import build_autoencoder
from pdiff_jax.generator.train import ae_train_step, init_generator_state
from pdiff_jax.generator.vae import kl_to_standard_normal
from pdiff_jax.runtime.optimizer import make_optimizer


def test_vae_loss_adds_exactly_the_weighted_kl():
    K, D = 6, 64
    x = jnp.asarray(np.random.default_rng(0).normal(size=(K, D)), jnp.float32)
    losses = {}
    for w in (0.0, 0.5):
        ae = build_autoencoder(D, kind="vae", kl_weight=w, input_noise=0.0, channels=(8, 8, 8, 8))
        variables = ae.init({"params": jax.random.key(0)}, x[:1])
        tx = make_optimizer(optimizer="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.0)
        mu, logvar = ae.apply(variables, x, method="posterior")
        state = init_generator_state(jax.tree.map(jnp.array, variables), tx, ema=False)
        _, losses[w] = ae_train_step(state, x, jax.random.key(1), model=ae, tx=tx, batch_size=K)
    kl = jnp.mean(kl_to_standard_normal(mu, logvar))
    assert float(kl) > 0
    np.testing.assert_allclose(losses[0.5] - losses[0.0], 0.5 * kl, rtol=1e-4)
    np.testing.assert_allclose(kl_to_standard_normal(jnp.zeros(3), jnp.zeros(3)), 0.0)
