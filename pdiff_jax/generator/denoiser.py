"""The epsilon network: a small 1D UNet over latents f32[B, L, C].

Each sample is conditioned on its OWN timestep (the original code embedded
sample 0's t for the whole batch). The timestep enters every residual block
as a per-channel scale and shift after a normalization. Normalizations are
over channels (LayerNorm), not over the length: latents can be 1-4 long.
Kept small on purpose: 1000 sampling steps of 100 latents must take a few
seconds on a CPU.

Optionally conditioned (``condition`` 'level' or 'value', paper Tab. 6): the
condition is embedded and added to the timestep embedding, so it reaches every
block the same way t does. A negative condition is the "null" condition of
classifier-free guidance (``conditioning.py``). The 'paper' denoiser stays
unconditional.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
    """Sinusoidal embedding: t int/float[B] -> f32[B, dim]."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimeResBlock(nn.Module):
    """h + conv(act(FiLM_t(norm(conv(act(norm(h))))))).

    The timestep modulates AFTER the normalization (scale and shift per
    channel): added before a normalization, a per-channel shift would be
    subtracted right away by the mean.
    """

    channels: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, h, temb):  # [B, L, C], [B, E] -> [B, L, channels]
        skip = h if h.shape[-1] == self.channels else nn.Dense(self.channels)(h)
        y = nn.Conv(self.channels, (self.kernel_size,), padding="SAME")(
            nn.silu(nn.LayerNorm()(h)))
        scale, shift = jnp.split(nn.Dense(2 * self.channels)(temb)[:, None, :], 2, axis=-1)
        y = nn.LayerNorm()(y) * (1.0 + scale) + shift  # each sample's own t
        y = nn.Conv(self.channels, (self.kernel_size,), padding="SAME")(nn.silu(y))
        return skip + y


class ConditionEmbedding(nn.Module):
    """c f32[B] -> f32[B, dim]; c < 0 is the null condition (a learned vector).

    'level': c is an accuracy-level index in [0, num_levels) (one embedding row each,
    the paper's one-hot); 'value': c is an accuracy fraction in [0, 1], embedded
    sinusoidally at 1000x so that 0.1-point differences are resolved, then an MLP.
    """

    kind: str
    dim: int
    num_levels: int = 0

    @nn.compact
    def __call__(self, c):
        c = jnp.asarray(c, jnp.float32)
        null = c < 0
        if self.kind == "level":
            idx = jnp.where(null, self.num_levels, c).astype(jnp.int32)
            return nn.Embed(self.num_levels + 1, self.dim)(idx)  # row num_levels: null
        if self.kind == "value":
            emb = timestep_embedding(jnp.where(null, 0.0, c) * 1000.0, self.dim)
            emb = nn.Dense(self.dim)(nn.silu(nn.Dense(self.dim)(emb)))
            null_emb = self.param("null", nn.initializers.normal(0.02), (self.dim,))
            return jnp.where(null[:, None], null_emb[None], emb)
        raise ValueError(f"condition must be 'none', 'level' or 'value', got {self.kind!r}")


class UNet1D(nn.Module):
    """eps(x_t, t[, c]): x f32[B, L, C], t int32[B], c f32[B] -> f32[B, L, C].

    ``channels`` lists the width of each level; the length is halved between
    levels (internally padded to a multiple of 2**(levels-1) and cropped back).
    With ``condition`` 'level' / 'value', ``c`` (None = null for every sample) is
    embedded and added to the timestep embedding.
    """

    channels: Sequence[int] = (32, 32)
    time_dim: int = 64
    kernel_size: int = 3
    condition: str = "none"     # none | level | value (derived from generator.condition)
    num_levels: int = 0         # 'level': the number of accuracy ranges

    @nn.compact
    def __call__(self, x, t, c=None):
        B, L, C = x.shape
        m = 2 ** (len(self.channels) - 1)
        Lp = -(-L // m) * m
        h = jnp.pad(x, ((0, 0), (0, Lp - L), (0, 0)))
        temb = timestep_embedding(t, self.time_dim)
        temb = nn.Dense(self.time_dim)(nn.silu(nn.Dense(self.time_dim)(temb)))
        if self.condition != "none":
            c = jnp.full((B,), -1.0) if c is None else c
            temb = temb + ConditionEmbedding(self.condition, self.time_dim, self.num_levels)(c)
        temb = nn.silu(temb)

        h = nn.Conv(self.channels[0], (self.kernel_size,), padding="SAME")(h)
        skips = []
        for i, c in enumerate(self.channels):
            h = TimeResBlock(c, self.kernel_size)(h, temb)
            skips.append(h)
            if i + 1 < len(self.channels):  # down-merge: [B, L, c] -> [B, L/2, c_next]
                b, ln, ch = h.shape
                h = nn.Dense(self.channels[i + 1])(h.reshape(b, ln // 2, 2 * ch))
        h = TimeResBlock(self.channels[-1], self.kernel_size)(h, temb)  # middle
        for i in reversed(range(len(self.channels))):
            c = self.channels[i]
            h = TimeResBlock(c, self.kernel_size)(jnp.concatenate([h, skips[i]], -1), temb)
            if i > 0:  # sub-pixel up: [B, L, c] -> [B, 2L, c_prev]
                b, ln, _ = h.shape
                c_prev = self.channels[i - 1]
                h = nn.Dense(2 * c_prev)(h).reshape(b, 2 * ln, c_prev)
        h = nn.silu(nn.LayerNorm()(h))
        out = nn.Conv(C, (self.kernel_size,), padding="SAME",
                      kernel_init=nn.initializers.zeros)(h)
        return out[:, :L]
