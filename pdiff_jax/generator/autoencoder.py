"""The parameter autoencoder: flat vectors f32[B, D] <-> bounded latents f32[B, L, C].

Parameters have no spatial order worth convolving over at full length, so the
vector is zero-padded and folded into ``[L0, fold]`` first (a patch stem): the
convolutions then run at length ``L0`` (at most ``max_len``) whatever D is. For
small D the fold is ``fold``; for large D it grows (``fold = ceil(D / max_len)``)
so compute and activation memory stay bounded and only the stem and the head
(``fold x channels`` weights each) grow with D.

Encoder: stem, then 4 stages of [residual conv block, 2x down-merge], then a
bounded latent ``latent_bound * tanh(.)`` (the original's unbounded latents are
what broke entire-network generation). Decoder: the mirror image, upsampling by
sub-pixel layers (a dense layer to 2*C channels, then a reshape), never
ConvTranspose (its backward pass is ~50x slower on XLA CPU).

Noise augmentation (training only, rng stream ``noise``): Gaussian noise of std
``input_noise`` on the NORMALIZED input (the original added it to raw
parameters; in normalized units the amplitude means the same for every zoo) and
``latent_noise`` on the latent. Set either to 0 to switch it off.

Two architectures, chosen by ``autoencoder.model.kind`` (``registry.build_autoencoder``):
``conv`` (:class:`ParamAutoencoder`, above) suits subsets whose members are
snapshots of one model; ``fc`` (:class:`FCAutoencoder`) suits entire-network
zoos of independently trained members, which must each be reproduced: its
output layer is a Dense(D) with weights per coordinate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pdiff_jax.config.choices import NORMS

from .mixing import mix_rows, pair_mix

NUM_STAGES = 4


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Shapes derived from D (never written into a config)."""

    D: int
    length: int  # L0, length of the folded input, a multiple of 2**NUM_STAGES
    fold: int  # numbers per position
    latent_length: int

    @property
    def padded(self) -> int:
        return self.length * self.fold


def geometry(D: int, *, fold: int = 32, min_len: int = 32, max_len: int = 512) -> Geometry:
    m = 2 ** NUM_STAGES
    if D <= 0:
        raise ValueError(f"D must be positive, got {D}")
    if min_len % m or max_len % m or min_len > max_len:
        raise ValueError(f"min_len and max_len must be multiples of {m} with min_len <= max_len")
    length = math.ceil(math.ceil(D / fold) / m) * m
    length = min(max(length, min_len), max_len)
    fold_eff = math.ceil(D / length)
    return Geometry(D=D, length=length, fold=fold_eff, latent_length=length // m)


class GroupNorm1D(nn.Module):
    """Normalization over the length axis and ``group_size`` channels, per sample.

    ``group_size=1`` is instance normalization. Written out by hand: flax's
    GroupNorm (reshape to groups, float32 promotions) ran ~5x slower on XLA CPU
    for these shapes (an AE step at D = 256: 150 ms against 30 ms).
    """

    group_size: int = 1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, h):  # [B, L, C]
        B, L, C = h.shape
        g = self.group_size
        hg = h.reshape(B, L, C // g, g) if g > 1 else h
        axes = (1, 3) if g > 1 else (1,)
        mean = jnp.mean(hg, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(hg - mean), axis=axes, keepdims=True)
        y = ((hg - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(B, L, C)
        scale = self.param("scale", nn.initializers.ones, (C,))
        bias = self.param("bias", nn.initializers.zeros, (C,))
        return y * scale + bias


def make_norm(kind: str, train: bool, name: str | None = None):
    if kind == "instance":
        return lambda h: GroupNorm1D(group_size=1, name=name)(h)
    if kind == "group":  # 8 groups (or fewer when C is small)
        return lambda h: GroupNorm1D(group_size=h.shape[-1] // math.gcd(h.shape[-1], 8),
                                     name=name)(h)
    if kind == "batch":
        return lambda h: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                      name=name)(h)
    if kind == "none":
        return lambda h: h
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class ResBlock(nn.Module):
    """h + conv(act(norm(h))): the residual path keeps per-sample offsets that a
    normalization on the main path would remove."""

    channels: int
    norm: str
    kernel_size: int = 3

    @nn.compact
    def __call__(self, h, train: bool):  # [B, L, C] -> [B, L, channels]
        if h.shape[-1] != self.channels:
            h = nn.Dense(self.channels, name="proj")(h)
        y = nn.leaky_relu(make_norm(self.norm, train)(h))
        y = nn.Conv(self.channels, (self.kernel_size,), padding="SAME")(y)
        return h + y


def reconstruct(ae, x, train: bool):
    """Encode, add latent noise when training, decode: (recon f32[B, D], latent f32[B, L, C])."""
    z = ae.encode(x, train)
    z_in = z
    if train and ae.latent_noise > 0:
        z_in = z + ae.latent_noise * jax.random.normal(ae.make_rng("noise"), z.shape)
    return ae.decode(z_in, train), z


class ParamAutoencoder(nn.Module):
    D: int
    fold: int = 32
    min_len: int = 32
    max_len: int = 512
    channels: Sequence[int] = (32, 32, 64, 64)
    latent_channels: int = 4
    latent_bound: float = 1.0
    norm: str = "instance"
    kernel_size: int = 3
    input_noise: float = 1e-3
    latent_noise: float = 0.1

    @property
    def geom(self) -> Geometry:
        return geometry(self.D, fold=self.fold, min_len=self.min_len, max_len=self.max_len)

    def geometry_meta(self) -> dict:
        g = self.geom
        return {"kind": "conv", "length": g.length, "fold": g.fold}

    def setup(self):
        if len(self.channels) != NUM_STAGES:
            raise ValueError(f"channels needs {NUM_STAGES} entries, got {self.channels}")
        g = self.geom
        c = tuple(self.channels)
        self.stem = nn.Dense(c[0])
        self.enc_blocks = [ResBlock(ci, self.norm, self.kernel_size) for ci in c]
        self.enc_downs = [nn.Dense(c[min(i + 1, NUM_STAGES - 1)]) for i in range(NUM_STAGES)]
        self.to_latent = nn.Dense(self.latent_channels)
        self.from_latent = nn.Dense(c[-1])
        self.dec_ups = [nn.Dense(2 * ci) for ci in c]
        self.dec_blocks = [ResBlock(ci, self.norm, self.kernel_size) for ci in c]
        self.head = nn.Dense(g.fold)

    def encode(self, x, train: bool = False):
        """f32[B, D] normalized parameters -> f32[B, L0/16, latent_channels] in (-bound, bound)."""
        return self.latent_bound * jnp.tanh(self.to_latent(self.encode_features(x, train)))

    def encode_features(self, x, train: bool = False):
        """f32[B, D] -> the features the latent head reads, f32[B, L0/16, channels[-1]]."""
        g = self.geom
        B = x.shape[0]
        if train and self.input_noise > 0:
            x = x + self.input_noise * jax.random.normal(self.make_rng("noise"), x.shape, x.dtype)
        x = jnp.pad(x, ((0, 0), (0, g.padded - self.D))).reshape(B, g.length, g.fold)
        h = self.stem(x)  # [B, L0, c0]
        for block, down in zip(self.enc_blocks, self.enc_downs, strict=True):
            h = block(h, train)
            B_, L, C = h.shape
            h = down(h.reshape(B_, L // 2, 2 * C))  # [B, L/2, c_next]
        return nn.leaky_relu(h)

    def decode(self, z, train: bool = False):
        """f32[B, L0/16, latent_channels] -> f32[B, D] (normalized coordinates)."""
        g = self.geom
        B = z.shape[0]
        h = self.from_latent(z)
        for up, block in zip(self.dec_ups[::-1], self.dec_blocks[::-1], strict=True):
            B_, L, _ = h.shape
            h = up(h)
            h = h.reshape(B_, 2 * L, h.shape[-1] // 2)
            h = block(h, train)
        h = nn.leaky_relu(h)
        out = self.head(h).reshape(B, g.padded)  # [B, L0 * fold]
        return out[:, : self.D]

    def __call__(self, x, train: bool = False):
        """Returns (reconstruction f32[B, D], latent f32[B, L, C]); noise only when training."""
        return reconstruct(self, x, train)


# -- fully-connected variant (the paper's "FC vs 1D CNN" ablation) ------------------------

def make_feature_norm(kind: str, train: bool):
    """Normalization of dense features f32[B, H]. A per-sample norm over a length-1
    "sequence" would be degenerate, so ``instance`` means LayerNorm over all H
    features here, ``group`` 8 groups of features, ``batch`` BatchNorm."""
    if kind == "instance":
        return lambda h: GroupNorm1D(group_size=h.shape[-1])(h[:, None, :])[:, 0]
    if kind == "group":
        return lambda h: GroupNorm1D(group_size=h.shape[-1] // math.gcd(h.shape[-1], 8))(
            h[:, None, :])[:, 0]
    return make_norm(kind, train)


class FCBlock(nn.Module):
    """Dense(width) -> norm -> leaky_relu on f32[B, H]."""

    width: int
    norm: str

    @nn.compact
    def __call__(self, h, train: bool):
        return nn.leaky_relu(make_feature_norm(self.norm, train)(nn.Dense(self.width)(h)))


class FCAutoencoder(nn.Module):
    """Fully-connected parameter autoencoder for entire-network zoos.

    Encoder: f32[B, D] -> [Dense(h) -> norm -> leaky_relu] for h in ``hidden``
    -> Dense(latent_len * latent_channels) -> ``latent_bound * tanh`` -> f32[B,
    latent_len, latent_channels] (the shape the UNet-1D denoiser expects).
    Decoder: the mirror image, ending in Dense(D): every coordinate has its own
    output weights, so the K zoo members can be reproduced individually (the
    conv AE's shared per-position head cannot do that for independent networks).
    Cost is dominated by the two D x hidden[0] matrices (dense GEMMs, fast on CPU).
    Noise augmentation as in :class:`ParamAutoencoder`.
    """

    D: int
    hidden: Sequence[int] = (512, 256)
    latent_len: int = 16
    latent_channels: int = 4
    latent_bound: float = 1.0
    norm: str = "instance"
    input_noise: float = 1e-3
    latent_noise: float = 0.1
    # > 0: training decodes latents mixed with another member's, (1 - a) z_i + a z_j with
    # a ~ U(0, latent_mix), against the same mix of the inputs, so the decoder is linear
    # between members (in an aligned zoo the parameter mixes are good networks; unmixed,
    # the latent midpoint of two members decoded to ~75 % on MLP-3).
    latent_mix: float = 0.0

    def setup(self):
        if not self.hidden or any(int(h) <= 0 for h in self.hidden):
            raise ValueError(f"hidden must list positive widths, got {self.hidden}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        h = tuple(int(v) for v in self.hidden)
        self.enc_blocks = [FCBlock(v, self.norm) for v in h]
        self.to_latent = nn.Dense(self.latent_len * self.latent_channels)
        self.dec_blocks = [FCBlock(v, self.norm) for v in h[::-1]]
        self.head = nn.Dense(self.D)

    def geometry_meta(self) -> dict:
        return {"kind": "fc", "hidden": [int(v) for v in self.hidden],
                "latent_len": self.latent_len}

    def encode(self, x, train: bool = False):
        """f32[B, D] normalized parameters -> f32[B, latent_len, latent_channels]."""
        if train and self.input_noise > 0:
            x = x + self.input_noise * jax.random.normal(self.make_rng("noise"), x.shape, x.dtype)
        h = x
        for block in self.enc_blocks:
            h = block(h, train)
        z = self.latent_bound * jnp.tanh(self.to_latent(h))
        return z.reshape(x.shape[0], self.latent_len, self.latent_channels)

    def decode(self, z, train: bool = False):
        """f32[B, latent_len, latent_channels] -> f32[B, D] (normalized coordinates)."""
        h = z.reshape(z.shape[0], -1)
        for block in self.dec_blocks:
            h = block(h, train)
        return self.head(h)

    def __call__(self, x, train: bool = False):
        if not (train and self.latent_mix > 0):
            return reconstruct(self, x, train)
        k_pair, k_weight, k_noise = jax.random.split(self.make_rng("noise"), 3)
        z = self.encode(x, train)
        partner, a = pair_mix(k_pair, k_weight, x.shape[0], self.latent_mix, x.dtype)
        z_mix, x_mix = mix_rows(z, partner, a), mix_rows(x, partner, a)
        if self.latent_noise > 0:
            z_mix = z_mix + self.latent_noise * jax.random.normal(k_noise, z.shape, z.dtype)
        # The stage's loss is MSE(output, x); shifting the output by x - x_mix makes it
        # exactly MSE(decode(z_mix), x_mix).
        return x + (self.decode(z_mix, train) - x_mix), z


def reconstruction_loss(recon, target):
    """MSE in normalized coordinates (each coordinate weighs the same)."""
    return jnp.mean((recon - target) ** 2)
