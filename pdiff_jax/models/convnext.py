"""ConvNeXt (Liu et al. 2022), timm layout, NHWC input.

Parameter names follow timm's `ConvNeXt` ('.' -> '/', list index joined with '_',
Sequential children named) so that a timm state dict maps onto them one to one:

    stem/conv, stem/norm                     stem.0.*, stem.1.*
    stages_{s}/downsample/norm, .../conv     stages.{s}.downsample.{0,1}.*   (s > 0)
    stages_{s}/blocks_{b}/conv_dw            stages.{s}.blocks.{b}.conv_dw.*  (7x7 depthwise)
    stages_{s}/blocks_{b}/norm               stages.{s}.blocks.{b}.norm.*
    stages_{s}/blocks_{b}/mlp/fc1, mlp/fc2   stages.{s}.blocks.{b}.mlp.fc{1,2}.*
    stages_{s}/blocks_{b}/gamma f32[C]       stages.{s}.blocks.{b}.gamma  (layer scale)
    head/norm, head/fc                       head.norm.*, head.fc.*

LayerNorm eps 1e-6 over channels (timm's LayerNorm2d is the same thing in NHWC),
exact GELU, layer scale initialised to 1e-6, global average pooling before the
head's LayerNorm. The stem is a patchify conv (4x4 stride 4 by default). Like
timm, a stem patch of 2 adds a downsampling layer to stage 0 (overall stride 4
again) unless `downsample_stage0=False`: the default for images up to 64 pixels
a side is that, stem patch 2 with no stage-0 downsampling, so a 32x32 image gives
maps of 16, 8, 4, 2 pixels.

Split points: 'stem', every stage ('stages_0', ...; for s > 0 this is the input of
its downsampling), every block ('stages_{s}/blocks_{b}'), inside a block
'.../norm' (after the depthwise conv; carry {'x': block input, 'h': activation};
the default subset's split point), then 'head' (the pooling), 'head/norm',
'head/fc'.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from pdiff_jax.models.layers import Stage, Staged, global_avg_pool
from pdiff_jax.models.registry import ModelDef, register

LN_EPSILON = 1e-6
LAYER_SCALE_INIT = 1e-6
_init = nn.initializers.truncated_normal(stddev=0.02)  # timm: trunc_normal_(std=.02)


def _layer_norm() -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPSILON)


class Stem(nn.Module):
    """Patchify conv (kernel = stride = patch) + LayerNorm."""

    features: int
    patch: int = 4

    def setup(self):
        p = self.patch
        self.conv = nn.Conv(self.features, (p, p), strides=(p, p), padding="VALID",
                            kernel_init=_init)
        self.norm = _layer_norm()

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.norm(self.conv(x))


class Downsample(nn.Module):
    """LayerNorm + 2x2 stride-2 conv: f32[B, H, W, C] -> f32[B, H/2, W/2, features]."""

    features: int

    def setup(self):
        self.norm = _layer_norm()
        self.conv = nn.Conv(self.features, (2, 2), strides=(2, 2), padding="VALID",
                            kernel_init=_init)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(self.norm(x))


class Mlp(nn.Module):
    """Pointwise fc1 (x4) -> GELU (exact) -> fc2, on the channel axis."""

    hidden: int
    dim: int

    def setup(self):
        self.fc1 = nn.Dense(self.hidden, kernel_init=_init)
        self.fc2 = nn.Dense(self.dim, kernel_init=_init)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(nn.gelu(self.fc1(x), approximate=False))


class Block(Staged):
    """x + gamma * mlp(norm(dwconv7x7(x)))."""

    dim: int

    def setup(self):
        self.conv_dw = nn.Conv(self.dim, (7, 7), padding=((3, 3), (3, 3)),
                               feature_group_count=self.dim, kernel_init=_init)
        self.norm = _layer_norm()
        self.mlp = Mlp(4 * self.dim, self.dim)
        self.gamma = self.param("gamma", nn.initializers.constant(LAYER_SCALE_INIT), (self.dim,))

    def stages(self, train: bool) -> list[Stage]:
        del train  # no dropout, no BatchNorm (drop path is not implemented)
        return [
            ("conv_dw", lambda x: {"x": x, "h": self.conv_dw(x)}),
            ("norm", lambda c: c["x"] + self.gamma * self.mlp(self.norm(c["h"]))),
        ]


class ConvNeXtStage(Staged):
    """Optional downsampling, then `depth` blocks of width `dim`."""

    dim: int
    depth: int
    has_downsample: bool

    def setup(self):
        if self.has_downsample:
            self.downsample = Downsample(self.dim)
        self.blocks = [Block(self.dim) for _ in range(self.depth)]

    def stages(self, train: bool) -> list[Stage]:
        down = [("downsample", self.downsample)] if self.has_downsample else []
        return [*down, *[(block.name, block) for block in self.blocks]]


class Head(Staged):
    """Global average pool -> LayerNorm -> fc."""

    num_classes: int

    def setup(self):
        self.norm = _layer_norm()
        self.fc = nn.Dense(self.num_classes, kernel_init=_init)

    def stages(self, train: bool) -> list[Stage]:
        del train
        return [("pool", global_avg_pool), ("norm", self.norm), ("fc", self.fc)]


class ConvNeXt(Staged):
    """ConvNeXt on f32[B, H, W, C] images -> f32[B, num_classes] logits."""

    num_classes: int
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    stem_patch: int = 4
    downsample_stage0: bool | None = None  # None: timm's rule, stem_patch == 2

    def setup(self):
        self.stem = Stem(self.dims[0], self.stem_patch)
        first = self.stem_patch == 2 if self.downsample_stage0 is None else self.downsample_stage0
        self.stages_ = [
            ConvNeXtStage(dim, depth, has_downsample=i > 0 or first, name=f"stages_{i}")
            for i, (dim, depth) in enumerate(zip(self.dims, self.depths, strict=True))]
        self.head = Head(self.num_classes)

    def stages(self, train: bool) -> list[Stage]:
        del train
        return [("stem", self.stem), *[(s.name, s) for s in self.stages_], ("head", self.head)]


# timm configurations: (depths, dims).
CONFIGS = {
    "convnext_atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "convnext_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnext_small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "convnext_base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
}


def default_stem_patch(input_shape: tuple[int, int, int]) -> int:
    """2 for images up to 64 pixels a side (32x32 -> 16x16 at stage 0), else 4."""
    return 2 if max(input_shape[:2]) <= 64 else 4


def _make(name: str):
    depths, dims = CONFIGS[name]

    def factory(*, num_classes: int, input_shape: tuple[int, int, int],
                stem_patch: int | None = None,
                downsample_stage0: bool | None = None) -> ModelDef:
        if stem_patch is None:
            stem_patch = default_stem_patch(input_shape)
            if downsample_stage0 is None:
                downsample_stage0 = False  # keep the small image's resolution
        module = ConvNeXt(num_classes=num_classes, depths=depths, dims=dims,
                          stem_patch=stem_patch, downsample_stage0=downsample_stage0)
        last = f"stages_{len(depths) - 1}/blocks_{depths[-1] - 1}"
        return ModelDef(
            name=name, module=module, input_shape=tuple(input_shape), num_classes=num_classes,
            default_subset=(rf"^params/{last}/norm/(scale|bias)$",
                            r"^params/head/norm/(scale|bias)$"))

    factory.__doc__ = (
        f"{name} (depths {depths}, dims {dims}): kwargs stem_patch (default 4, or 2 for "
        "images up to 64 pixels a side) and downsample_stage0 (default: timm's rule, "
        "stem_patch == 2, except False with the small-image default). Default subset: the "
        "last block's norm and the head's norm (scale and bias).")
    return factory


for _name in CONFIGS:
    register(_name, _make(_name))

__all__ = ["CONFIGS", "Block", "ConvNeXt", "ConvNeXtStage", "Downsample", "Head", "Mlp", "Stem",
           "default_stem_patch"]
