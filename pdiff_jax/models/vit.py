"""Vision Transformer (Dosovitskiy et al. 2021), timm layout, NHWC input.

Parameter names follow timm's `VisionTransformer` ('.' -> '/', list index joined
with '_') so that a timm state dict maps onto them one to one:

    patch_embed/kernel, patch_embed/bias    patch_embed.proj.{weight,bias}
    cls_token f32[1, 1, D], pos_embed f32[1, 1 + N, D]   cls_token, pos_embed
    blocks_{i}/norm1, norm2/{scale,bias}    blocks.{i}.norm{1,2}.{weight,bias}
    blocks_{i}/attn/qkv, attn/proj          blocks.{i}.attn.{qkv,proj}.*
    blocks_{i}/mlp/fc1, mlp/fc2             blocks.{i}.mlp.fc{1,2}.*
    norm/{scale,bias}, head/{kernel,bias}   norm.*, head.*

Pre-norm blocks, LayerNorm eps 1e-6, exact (erf) GELU, class-token pooling: the
`vit_*_patch16_224` models of timm. The patch size and image size are free, so a
32x32 CIFAR image with patch 4 gives 64 tokens (+ the class token).

Split points: 'patch_embed', 'pos_embed', every block ('blocks_0', ...), inside a
block 'blocks_{i}/norm2' (after the attention residual; the default subset's
split point), then 'norm', 'pool', 'head'. The carry is the token array
f32[B, 1 + N, D] from 'pos_embed' to 'pool'.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from pdiff_jax.models.layers import Stage, Staged
from pdiff_jax.models.registry import ModelDef, register

LN_EPSILON = 1e-6
_dense_init = nn.initializers.truncated_normal(stddev=0.02)


def _dense(features: int) -> nn.Dense:
    return nn.Dense(features, kernel_init=_dense_init)


def _layer_norm() -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPSILON)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm's layout)."""

    dim: int
    num_heads: int

    def setup(self):
        self.qkv = _dense(3 * self.dim)
        self.proj = _dense(self.dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape  # [B, L, D]
        head_dim = d // self.num_heads
        # torch: reshape(B, L, 3, heads, head_dim); q, k, v = [B, L, heads, head_dim] each.
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5  # [B, H, L, L]
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)  # [B, L, H, head_dim]
        return self.proj(out.reshape(b, n, d))


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    hidden: int
    dim: int

    def setup(self):
        self.fc1 = _dense(self.hidden)
        self.fc2 = _dense(self.dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(nn.gelu(self.fc1(x), approximate=False))


class Block(Staged):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    dim: int
    num_heads: int
    mlp_ratio: float = 4.0

    def setup(self):
        self.norm1 = _layer_norm()
        self.attn = Attention(self.dim, self.num_heads)
        self.norm2 = _layer_norm()
        self.mlp = Mlp(int(self.dim * self.mlp_ratio), self.dim)

    def stages(self, train: bool) -> list[Stage]:
        del train  # no dropout, no BatchNorm
        return [
            ("norm1", lambda x: x + self.attn(self.norm1(x))),
            ("norm2", lambda x: x + self.mlp(self.norm2(x))),
        ]


class VisionTransformer(Staged):
    """ViT on f32[B, H, W, C] images -> f32[B, num_classes] logits."""

    num_classes: int
    image_size: tuple[int, int]
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0

    def setup(self):
        h, w = self.image_size
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {self.image_size} is not a multiple of patch {p}")
        num_tokens = 1 + (h // p) * (w // p)
        self.patch_embed = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding="VALID")
        self.cls_token = self.param(
            "cls_token", nn.initializers.normal(1e-6), (1, 1, self.embed_dim))
        self.pos_embed = self.param(
            "pos_embed", nn.initializers.normal(0.02), (1, num_tokens, self.embed_dim))
        self.blocks = [Block(self.embed_dim, self.num_heads, self.mlp_ratio)
                       for _ in range(self.depth)]
        self.norm = _layer_norm()
        self.head = _dense(self.num_classes)

    def _embed_patches(self, x: jax.Array) -> jax.Array:
        x = self.patch_embed(x)  # [B, H/p, W/p, D]
        return x.reshape(x.shape[0], -1, x.shape[-1])  # [B, N, D], row-major like torch

    def _add_position(self, x: jax.Array) -> jax.Array:
        cls = jnp.broadcast_to(self.cls_token, (x.shape[0], 1, x.shape[-1]))
        return jnp.concatenate([cls, x], axis=1) + self.pos_embed  # [B, 1 + N, D]

    def stages(self, train: bool) -> list[Stage]:
        del train
        return [
            ("patch_embed", self._embed_patches),
            ("pos_embed", self._add_position),
            *[(block.name, block) for block in self.blocks],
            ("norm", self.norm),
            ("pool", lambda x: x[:, 0]),  # class token
            ("head", self.head),
        ]


# timm configurations: (embed_dim, depth, num_heads).
CONFIGS = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
}


def _make(name: str):
    embed_dim, depth, num_heads = CONFIGS[name]

    def factory(*, num_classes: int, input_shape: tuple[int, int, int],
                patch_size: int | None = None) -> ModelDef:
        if patch_size is None:
            patch_size = default_patch_size(input_shape)
        module = VisionTransformer(
            num_classes=num_classes, image_size=tuple(input_shape[:2]), patch_size=patch_size,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads)
        last = f"blocks_{depth - 1}"
        return ModelDef(
            name=name, module=module, input_shape=tuple(input_shape), num_classes=num_classes,
            default_subset=(rf"^params/{last}/norm2/(scale|bias)$", r"^params/norm/(scale|bias)$"))

    factory.__doc__ = (
        f"{name} (D={embed_dim}, depth {depth}, {num_heads} heads): kwarg patch_size "
        "(default 16, or 4 for images up to 64 pixels a side). Default subset: the last "
        "block's norm2 and the final norm (scale and bias).")
    return factory


def default_patch_size(input_shape: tuple[int, int, int]) -> int:
    """4 for images up to 64 pixels a side (CIFAR: 8x8 = 64 tokens), else 16."""
    return 4 if max(input_shape[:2]) <= 64 else 16


for _name in CONFIGS:
    register(_name, _make(_name))

__all__ = ["CONFIGS", "Attention", "Block", "Mlp", "VisionTransformer", "default_patch_size"]
