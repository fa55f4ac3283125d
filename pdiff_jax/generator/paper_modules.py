"""The p-diff authors' own generator networks, ported to Flax Linen.

Ports of the modules their ``configs/system/ae_ddpm.yaml`` trains (public
PyTorch code, NUS-HPC-AI-Lab/Neural-Network-Parameter-Diffusion, branch
``main``): the parameter autoencoder (``core/module/modules/encoder.py``,
classes ``medium`` and ``small``) and the latent denoiser
(``core/module/modules/unet.py``, class ``AE_CNN_bottleneck``). Same layers,
same shapes, same parameter counts (AE ``medium`` 1,000,497 whatever D;
denoiser 2,362,273 at a 12-number latent), same initialization
distributions (PyTorch's defaults), and numerically the same forward pass:
``tests/golden/make_paper_golden.py`` runs their modules on copied weights
and ``tests/test_paper_modules.py`` checks ours against that file.

Layout: ours is channels-last everywhere. Their latent is ``[B, C, L]``;
ours is ``f32[B, L, C]`` (its transpose), the layout every pdiff_jax
autoencoder and denoiser uses. Their denoiser flattens the latent channel by
channel (``[B, C, L] -> [B, 1, C*L]``); :class:`PaperDenoiser` does the same
from ``[B, L, C]``, so the same weights give the same function.

Faster formulations with the same maths (XLA CPU runs ConvTranspose backward
~50x slower than a plain conv, CPU_NOTES.md): a strided conv whose kernel equals
its stride is a reshape + matrix multiply (:class:`PatchConv1D`); a transposed
conv is a sub-pixel conv, i.e. a conv to ``stride * C`` channels and a reshape
(:class:`SubPixelConvTranspose1D`; a plain matrix multiply when kernel <=
stride). Their kernels keep the layout of ``nn.Conv``/PyTorch
(``[k, C_in, C_out]``), so weights map one to one. Tests check both against
``lax.conv_general_dilated`` / ``lax.conv_transpose``.

One deliberate change: the denoiser embeds EACH sample's timestep (theirs
embedded sample 0's for the whole batch). Everything else is theirs,
including its quirks: the encoder's stride-1 conv pads 1 whatever the kernel
(so ``medium``'s k = 5 shortens each block by 2), the padded length is
``(floor(D / fold**4) + 1) * fold**4`` (a whole extra fold**4 when D is a
multiple), the first InstanceNorm normalizes each input vector (zero padding
included), and the noise is a convex mix ``x * (1 - f) + f * randn``.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_BLOCKS = 4
DENOISER_CHANNELS = (64, 128, 256, 512)


@dataclasses.dataclass(frozen=True)
class PaperAESize:
    """One of their autoencoder classes: fold (= stride = kernel) and channels."""

    fold: int
    kernel_size: int
    enc_channels: tuple[int, ...]
    dec_channels: tuple[int, ...]


PAPER_AE_SIZES = {
    "medium": PaperAESize(fold=5, kernel_size=5, enc_channels=(4, 4, 4, 4),
                          dec_channels=(4, 256, 256, 8)),
    "small": PaperAESize(fold=3, kernel_size=3, enc_channels=(2, 2, 2, 2),
                         dec_channels=(2, 64, 64, 8)),
}


def torch_uniform(fan: int):
    """PyTorch's default conv init: U(-1/sqrt(fan), 1/sqrt(fan)) (kernel and bias)."""
    bound = 1.0 / math.sqrt(fan)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def instance_norm(h, epsilon: float = 1e-5):
    """InstanceNorm1d without affine: per sample and channel over the length. [B, L, C]."""
    mean = jnp.mean(h, axis=1, keepdims=True)
    var = jnp.mean(jnp.square(h - mean), axis=1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + epsilon)


def convex_noise(x, f: float, key):
    """Their noise augmentation: ``x * (1 - f) + f * randn`` (shrinks x as it adds noise)."""
    return x * (1.0 - f) + f * jax.random.normal(key, x.shape, x.dtype)


class TorchConv1D(nn.Module):
    """Conv1d (stride 1, symmetric zero padding) with PyTorch's init. [B, L, Cin] -> [B, L', C].

    A padding wider than (k - 1) / 2 (their decoder pads fold - 1 = 4 with k = 5) is
    applied with ``jnp.pad`` before a VALID conv: as a conv padding, XLA CPU ran its
    backward pass 35x slower (256 channels, batch 200: 18.9 s against 0.54 s).
    """

    features: int
    kernel_size: int
    padding: int

    @nn.compact
    def __call__(self, x):
        k, C_in = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", torch_uniform(C_in * k), (k, C_in, self.features))
        bias = self.param("bias", torch_uniform(C_in * k), (self.features,))
        pad = ((self.padding, self.padding),)
        if 2 * self.padding > k - 1:  # wider than SAME: pad first (see the docstring)
            x = jnp.pad(x, ((0, 0), *pad, (0, 0)))
            pad = "VALID"
        y = jax.lax.conv_general_dilated(x, kernel, (1,), pad,
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        return y + bias


class PatchConv1D(nn.Module):
    """Conv1d with stride == kernel and no padding, as reshape + matmul.

    [B, L, Cin] -> [B, L // k, C]; the last ``L % k`` positions are dropped, as
    the strided conv does. Kernel f32[k, Cin, C] (nn.Conv's layout).
    """

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x):
        B, L, C_in = x.shape
        k = self.kernel_size
        fan_in = C_in * k
        kernel = self.param("kernel", torch_uniform(fan_in), (k, C_in, self.features))
        bias = self.param("bias", torch_uniform(fan_in), (self.features,))
        n = L // k
        patches = x[:, : n * k].reshape(B, n, k * C_in)  # row-major: index m * Cin + c
        return patches @ kernel.reshape(k * C_in, self.features) + bias


class SubPixelConvTranspose1D(nn.Module):
    """ConvTranspose1d (stride s, no padding) as a sub-pixel conv.

    [B, L, Cin] -> [B, (L - 1) * s + k, C] with ``out[i*s + m] += x[i] @ kernel[m]``
    (PyTorch's semantics; kernel f32[k, Cin, C] is PyTorch's weight [Cin, C, k]
    transposed, no flip). The kernel is zero-padded to n*s taps, n = ceil(k/s),
    and applied as a conv of n taps to s*C channels, then reshaped: for k <= s
    that is one matrix multiply.
    """

    features: int
    kernel_size: int
    stride: int

    @nn.compact
    def __call__(self, x):
        B, L, C_in = x.shape
        k, s, C = self.kernel_size, self.stride, self.features
        fan_in = C * k  # PyTorch computes a ConvTranspose's fan-in from its output channels
        kernel = self.param("kernel", torch_uniform(fan_in), (k, C_in, C))
        bias = self.param("bias", torch_uniform(fan_in), (C,))
        n = -(-k // s)
        kp = jnp.pad(kernel, ((0, n * s - k), (0, 0), (0, 0))).reshape(n, s, C_in, C)
        # tap u of the conv reads x[q + u - (n - 1)] and writes out[q*s + r] via kp[n-1-u, r]
        w = kp[::-1].transpose(0, 2, 1, 3).reshape(n, C_in, s * C)  # [taps, Cin, s*C]
        if n == 1:
            y = x @ w[0]  # [B, L, s*C]
        else:
            xp = jnp.pad(x, ((0, 0), (n - 1, n - 1), (0, 0)))
            y = jax.lax.conv_general_dilated(xp, w, (1,), "VALID",
                                             dimension_numbers=("NWC", "WIO", "NWC"))
        y = y.reshape(B, y.shape[1] * s, C)
        return y[:, : (L - 1) * s + k] + bias


def paper_lengths(D: int, size: str) -> dict:
    """Their padded input length and the length after each encoder/decoder block."""
    cfg = PAPER_AE_SIZES[size]
    f, k = cfg.fold, cfg.kernel_size
    padded = (D // f ** NUM_BLOCKS + 1) * f ** NUM_BLOCKS
    enc = [padded]
    for _ in range(NUM_BLOCKS):
        inner = enc[-1] + 2 - k + 1  # stride-1 conv, padding 1
        enc.append((inner - k) // f + 1 if inner >= k else 0)
    dec = [enc[-1]]
    for i in range(NUM_BLOCKS):
        pad = f if i == NUM_BLOCKS - 1 else f - 1
        up = (dec[-1] - 1) * f + k
        dec.append(up + 2 * pad - k + 1)
    return {"padded": padded, "encoder": enc, "decoder": dec}


def min_paper_dim(size: str) -> int:
    """The smallest D at which their ``size`` AE has a latent of length >= 2.

    The padded length (D // fold**4 + 1) * fold**4 grows with D, so the answer is
    the first D of the first padded length that works."""
    f4 = PAPER_AE_SIZES[size].fold ** NUM_BLOCKS
    m = 1
    while paper_lengths(m * f4 - 1, size)["encoder"][-1] < 2:
        m += 1
    return (m - 1) * f4


class PaperAutoencoder(nn.Module):
    """Their ``medium`` (default) or ``small`` parameter autoencoder.

    f32[B, D] raw parameters (no normalization) -> latent f32[B, L, C] in
    [-1, 1] (C = 4 for medium, 2 for small; L = 3 at D = 2,048 for medium)
    -> f32[B, D]. ``input_noise`` / ``latent_noise`` are the convex-mix factors
    f of their ``add_noise`` (training only, rng stream ``noise``); the noisy
    latent is clamped to [-1, 1] before decoding, as theirs.

    Encoder block i: [LeakyReLU (not in block 0), InstanceNorm, Conv k pad 1,
    LeakyReLU, InstanceNorm, Conv k stride fold] (+ tanh after the last).
    Decoder block i: [LeakyReLU, InstanceNorm, ConvTranspose k stride fold,
    LeakyReLU, InstanceNorm, Conv k pad fold-1 (fold in the last)].
    """

    D: int
    size: str = "medium"
    input_noise: float = 1e-3
    latent_noise: float = 0.5

    def setup(self):
        if self.size not in PAPER_AE_SIZES:
            raise ValueError(f"paper autoencoder size must be one of {tuple(PAPER_AE_SIZES)}, "
                             f"got {self.size!r}")
        lengths = paper_lengths(self.D, self.size)
        if lengths["encoder"][-1] < 2:
            smallest = min_paper_dim(self.size)
            raise ValueError(
                f"the paper's '{self.size}' autoencoder needs D >= {smallest} (at D = {self.D} "
                f"its latent would be {lengths['encoder'][-1]} long and the InstanceNorm of "
                "length 1 undefined, an error in their PyTorch code too); use size='small' "
                "(D >= 81) or the conv/fc autoencoders")
        cfg = PAPER_AE_SIZES[self.size]
        k, f = cfg.kernel_size, cfg.fold  # k == f in both their sizes: PatchConv1D applies
        enc = (cfg.enc_channels[0], *cfg.enc_channels)
        self.enc_convs = [TorchConv1D(enc[i], k, padding=1) for i in range(NUM_BLOCKS)]
        self.enc_downs = [PatchConv1D(enc[i + 1], k) for i in range(NUM_BLOCKS)]
        dec = (*cfg.dec_channels, 1)
        self.dec_ups = [SubPixelConvTranspose1D(dec[i], k, f) for i in range(NUM_BLOCKS)]
        self.dec_convs = [TorchConv1D(dec[i + 1], k, padding=f if i == NUM_BLOCKS - 1 else f - 1)
                          for i in range(NUM_BLOCKS)]

    def geometry_meta(self) -> dict:
        lengths = paper_lengths(self.D, self.size)
        return {"kind": "paper", "size": self.size, "padded": lengths["padded"],
                "latent_length": lengths["encoder"][-1]}

    def encode(self, x, train: bool = False):
        """f32[B, D] -> f32[B, L, C] in (-1, 1); input noise only when training."""
        if train and self.input_noise > 0:
            x = convex_noise(x, self.input_noise, self.make_rng("noise"))
        padded = paper_lengths(self.D, self.size)["padded"]
        h = jnp.pad(x, ((0, 0), (0, padded - self.D)))[:, :, None]  # [B, P, 1]
        for i, (conv, down) in enumerate(zip(self.enc_convs, self.enc_downs, strict=True)):
            if i > 0:
                h = nn.leaky_relu(h)
            h = conv(instance_norm(h))
            h = down(instance_norm(nn.leaky_relu(h)))
        return jnp.tanh(h)

    def decode(self, z, train: bool = False):
        """f32[B, L, C] -> f32[B, D]."""
        del train  # no train-time behaviour in the decoder
        h = z
        for up, conv in zip(self.dec_ups, self.dec_convs, strict=True):
            h = up(instance_norm(nn.leaky_relu(h)))
            h = conv(instance_norm(nn.leaky_relu(h)))
        return h[:, : self.D, 0]

    def __call__(self, x, train: bool = False):
        """(reconstruction f32[B, D], latent f32[B, L, C]); noise only when training."""
        z = self.encode(x, train)
        z_in = z
        if train and self.latent_noise > 0:
            z_in = convex_noise(z, self.latent_noise, self.make_rng("noise"))
        return self.decode(jnp.clip(z_in, -1.0, 1.0), train), z


class PaperDenoiser(nn.Module):
    """Their ``AE_CNN_bottleneck``: eps(x_t, t), x f32[B, L, C], t int32[B] -> f32[B, L, C].

    The latent is flattened channel by channel into a 1-channel sequence of
    n = L*C numbers (as theirs from [B, C, L]); 4 encoder and 4 decoder blocks
    of [LeakyReLU (not in the first), InstanceNorm, Conv3, LeakyReLU,
    InstanceNorm, Conv3] at full length, channels 64-128-256-512 and back,
    additive skips (dec1 + enc3, dec2 + enc2, dec3 + enc1); a learned
    embedding ``Embed(num_timesteps, n)`` of each sample's t added to the input
    of every block (broadcast over channels).
    """

    num_timesteps: int = 1000

    def _block(self, h, mid: int, out: int, first: bool, name: str):
        if not first:
            h = nn.leaky_relu(h)
        h = TorchConv1D(mid, 3, padding=1, name=f"{name}_conv1")(instance_norm(h))
        h = instance_norm(nn.leaky_relu(h))
        return TorchConv1D(out, 3, padding=1, name=f"{name}_conv2")(h)

    @nn.compact
    def __call__(self, x, t):
        B, L, C = x.shape
        n = L * C
        h = x.transpose(0, 2, 1).reshape(B, n, 1)  # their channel-major flattening
        temb = nn.Embed(self.num_timesteps, n, embedding_init=nn.initializers.normal(1.0),
                        name="time_embed")(t)[:, :, None]  # [B, n, 1]: each sample's own t
        c = DENOISER_CHANNELS
        e1 = self._block(h + temb, c[0], c[0], True, "enc1")
        e2 = self._block(e1 + temb, c[1], c[1], False, "enc2")
        e3 = self._block(e2 + temb, c[2], c[2], False, "enc3")
        e4 = self._block(e3 + temb, c[3], c[3], False, "enc4")
        d1 = self._block(e4 + temb, c[2], c[2], False, "dec1") + e3
        d2 = self._block(d1 + temb, c[1], c[1], False, "dec2") + e2
        d3 = self._block(d2 + temb, c[0], c[0], False, "dec3") + e1
        d4 = self._block(d3 + temb, c[0], 1, False, "dec4")
        return d4.reshape(B, C, L).transpose(0, 2, 1)


# -- weights from their PyTorch state dicts ---------------------------------------------

def _conv_kernel(w):  # PyTorch Conv1d [C_out, C_in, k] -> ours [k, C_in, C_out]
    return w.transpose(2, 1, 0)


def _conv_transpose_kernel(w):  # PyTorch ConvTranspose1d [C_in, C_out, k] -> [k, C_in, C_out]
    return w.transpose(2, 0, 1)


def _convert(state: dict, prefix: str, rule) -> dict:
    params: dict = {}
    for name, value in state.items():
        if not name.startswith(prefix):
            continue
        *path, leaf = name[len(prefix):].split(".")
        module, transform = rule(path)
        if module is None:
            raise ValueError(f"unexpected entry {name!r} in the state dict")
        arr = jnp.asarray(value, jnp.float32)
        if leaf == "weight":
            params.setdefault(module, {})["kernel"] = transform(arr)
        else:
            params.setdefault(module, {})[leaf] = arr
    return params


def ae_params_from_torch(state: dict, prefix: str = "") -> dict:
    """Their ``medium``/``small`` state dict (name -> array, e.g. ``{k: v.numpy() for k, v in
    sd.items()}``) -> params of :class:`PaperAutoencoder` (``{'params': ...}``).
    ``prefix``: what precedes ``encoder.``/``decoder.`` in the names (e.g. ``'ae_model.'``)."""
    def rule(path):
        part, _, i, j = path  # encoder.encoder.<block>.<layer>
        slot = {("encoder", "2"): ("enc_convs", _conv_kernel),
                ("encoder", "5"): ("enc_downs", _conv_kernel),
                ("decoder", "2"): ("dec_ups", _conv_transpose_kernel),
                ("decoder", "5"): ("dec_convs", _conv_kernel)}.get((part, j))
        return (None, None) if slot is None else (f"{slot[0]}_{i}", slot[1])
    return {"params": _convert(state, prefix, rule)}


def denoiser_params_from_torch(state: dict, prefix: str = "") -> dict:
    """Their ``AE_CNN_bottleneck`` state dict -> params of :class:`PaperDenoiser`."""
    def rule(path):
        if path == ["time_encode"]:
            return "time_embed", lambda w: w
        block, j = path
        first = block == "enc1"  # its Sequential has no leading LeakyReLU
        conv = {("1" if first else "2"): "conv1", ("4" if first else "5"): "conv2"}.get(j)
        return (None, None) if conv is None else (f"{block}_{conv}", _conv_kernel)
    params = _convert(state, prefix, rule)
    params["time_embed"] = {"embedding": params["time_embed"].pop("kernel")}
    return {"params": params}
