"""A variational parameter autoencoder: the folded 1D-CNN autoencoder with a KL term.

The paper's ablation "VAE + latent DDPM": the encoder predicts a mean and a
log-variance per latent number, training decodes a reparameterized sample
``z = mu + exp(logvar / 2) * eps`` (this replaces the fixed ``latent_noise``,
which the VAE ignores), and the loss adds ``kl_weight * KL(q(z|x) || N(0, I))``,
averaged over the latent numbers and the batch. Everything else (stem, blocks,
bound, input noise) is :class:`~pdiff_jax.generator.autoencoder.ParamAutoencoder`.

``encode`` returns the mean (deterministic, as for every kind), so the latent
DDPM is trained on and samples means, which the decoder then maps to
parameters. The KL term reaches the training step through Flax's ``sow`` into
the ``losses`` collection (``train.ae_train_step`` adds every sown loss).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from .autoencoder import ParamAutoencoder

LOGVAR_RANGE = (-12.0, 4.0)  # keeps exp(logvar) finite early in training


def kl_to_standard_normal(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, 1)) per number, same shape as ``mu``."""
    return 0.5 * (jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar)


class VariationalAutoencoder(ParamAutoencoder):
    """``autoencoder.model.kind = 'vae'``: latents f32[B, L0/16, latent_channels]."""

    kl_weight: float = 1e-3

    def setup(self):
        super().setup()
        self.to_logvar = nn.Dense(self.latent_channels,
                                  kernel_init=nn.initializers.zeros,
                                  bias_init=nn.initializers.constant(-6.0))

    def geometry_meta(self) -> dict:
        return dict(super().geometry_meta(), kind="vae")

    def posterior(self, x, train: bool = False):
        """(mean, log-variance), each f32[B, L, C]."""
        h = self.encode_features(x, train)
        mu = self.latent_bound * jnp.tanh(self.to_latent(h))
        return mu, jnp.clip(self.to_logvar(h), *LOGVAR_RANGE)

    def __call__(self, x, train: bool = False):
        """(reconstruction f32[B, D], mean latent f32[B, L, C]); sows the KL term when training."""
        mu, logvar = self.posterior(x, train)
        if not train:
            return self.decode(mu, train), mu
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(self.make_rng("noise"), mu.shape)
        self.sow("losses", "kl", self.kl_weight * jnp.mean(kl_to_standard_normal(mu, logvar)))
        return self.decode(z, train), mu
