"""No autoencoder: diffusion directly on the (normalized) parameters.

The paper's ablation "DDPM on parameters, no AE" runs the same stages with
this identity in the autoencoder's place: ``encode`` zero-pads the normalized
vector f32[B, D] to a multiple of ``latent_channels`` and reshapes it to the
"latent" f32[B, ceil(D / C), C] the denoiser takes; ``decode`` undoes it. It
has no parameters to learn (the autoencoder stage only records the zoo's
"latents") and no bound, so sampling clips nothing (``latent_bound`` is inf).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp


class IdentityAutoencoder(nn.Module):
    """``autoencoder.model.kind = 'identity'``."""

    D: int
    latent_channels: int = 4

    latent_bound = math.inf   # not a field: the latents are unbounded parameters

    @property
    def length(self) -> int:
        return -(-self.D // self.latent_channels)

    def geometry_meta(self) -> dict:
        return {"kind": "identity", "length": self.length}

    def encode(self, x, train: bool = False):
        """f32[B, D] -> f32[B, ceil(D / C), C] (zero-padded)."""
        del train
        pad = self.length * self.latent_channels - self.D
        return jnp.pad(x, ((0, 0), (0, pad))).reshape(x.shape[0], self.length,
                                                      self.latent_channels)

    def decode(self, z, train: bool = False):
        """f32[B, L, C] -> f32[B, D]."""
        del train
        return z.reshape(z.shape[0], -1)[:, : self.D]

    @nn.compact
    def __call__(self, x, train: bool = False):
        # One unused parameter: the training stage, its optimizer and its checkpoints expect
        # a params tree, and an empty one is not a tree every library stores.
        self.param("unused", nn.initializers.zeros, (1,))
        z = self.encode(x, train)
        return self.decode(z, train), z
