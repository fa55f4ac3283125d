"""ResNet-18 / ResNet-50 (He et al. 2016), torchvision layout, NHWC.

Parameter names follow torchvision (`.` -> `/`, block index joined with `_`) so
that a torchvision/timm state dict maps onto them one to one:

    conv1/kernel                       conv1.weight            (7x7 s2 or 3x3 s1 stem)
    bn1/{scale,bias}, bn1/{mean,var}   bn1.{weight,bias}, bn1.running_{mean,var}
    layer{L}_{B}/conv{1,2[,3]}/kernel  layer{L}.{B}.conv{k}.weight   (no conv biases)
    layer{L}_{B}/bn{1,2[,3]}/...       layer{L}.{B}.bn{k}.*
    layer{L}_{B}/downsample_conv/kernel  layer{L}.{B}.downsample.0.weight (1x1)
    layer{L}_{B}/downsample_bn/...       layer{L}.{B}.downsample.1.*
    fc/{kernel,bias}                   fc.{weight,bias}

with L in 1..4 and B from 0. Layouts: conv kernels are [kh, kw, in, out] (torch
[out, in, kh, kw]); fc kernel is [in, out] (torch [out, in]). BatchNorm params live
in 'params' (scale, bias) and running statistics in 'batch_stats' (mean, var).
Paddings equal torch's (explicit, symmetric), the bottleneck strides on its 3x3
conv (torchvision "v1.5"), BN eps 1e-5 and momentum 0.1 (torch convention), so
converted weights give torch's outputs.

Stems: 'imagenet' = 7x7 stride-2 conv + 3x3 stride-2 max-pool; 'cifar' = 3x3
stride-1 conv, no max-pool (the usual choice for 32x32 images). By default the
stem is chosen from the image size (max(H, W) <= 64 -> 'cifar').

Split points: the stem ('conv1', 'bn1', ['maxpool']), every block ('layer1_0',
...), every layer inside a block ('layer4_1/bn1', ..., 'layer4_1/residual'), then
'pool' and 'fc'. Inside a block the carry is {'x': block input, 'h': activation}.
"""

from __future__ import annotations

import flax.linen as nn

from pdiff_jax.models.layers import Stage, Staged, batch_norm, global_avg_pool
from pdiff_jax.models.registry import ModelDef, register

# torchvision initialises conv kernels with kaiming_normal_(mode='fan_out').
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, kernel: int, strides: int = 1) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                   padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=_conv_init)


class _Residual(Staged):
    """What both block kinds share: their fields and the (1x1 conv + BN) shortcut."""

    features: int
    strides: int = 1
    downsample: bool = False

    expansion = 1

    def setup_shortcut(self):
        if self.downsample:
            self.downsample_conv = _conv(self.features * self.expansion, 1, self.strides)
            self.downsample_bn = batch_norm()

    def shortcut(self, x, train: bool):
        if not self.downsample:
            return x
        return self.downsample_bn(self.downsample_conv(x), use_running_average=not train)

    def conv_bn_stages(self, pairs, train: bool) -> list[Stage]:
        """conv -> BN (-> ReLU but after the last) for each ``(conv, bn)`` name pair, then
        the residual sum; the block's input rides along as ``x`` for the shortcut."""
        ura = not train
        out = []
        for i, (conv, bn) in enumerate(pairs):
            act = nn.relu if i < len(pairs) - 1 else (lambda h: h)
            first = i == 0
            out.append((conv, lambda c, conv=conv, first=first: (
                {"x": c, "h": getattr(self, conv)(c)} if first
                else {**c, "h": getattr(self, conv)(c["h"])})))
            out.append((bn, lambda c, bn=bn, act=act: {
                **c, "h": act(getattr(self, bn)(c["h"], use_running_average=ura))}))
        out.append(("residual", lambda c: nn.relu(c["h"] + self.shortcut(c["x"], train))))
        return out


class BasicBlock(_Residual):
    """Two 3x3 convs + identity (or 1x1 conv + BN) shortcut. Output `features` channels."""

    def setup(self):
        self.conv1 = _conv(self.features, 3, self.strides)
        self.bn1 = batch_norm()
        self.conv2 = _conv(self.features, 3)
        self.bn2 = batch_norm()
        self.setup_shortcut()

    def stages(self, train: bool) -> list[Stage]:
        return self.conv_bn_stages((("conv1", "bn1"), ("conv2", "bn2")), train)


class Bottleneck(_Residual):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4) + shortcut. Output 4 * `features`."""

    expansion = 4

    def setup(self):
        self.conv1 = _conv(self.features, 1)
        self.bn1 = batch_norm()
        self.conv2 = _conv(self.features, 3, self.strides)
        self.bn2 = batch_norm()
        self.conv3 = _conv(self.features * 4, 1)
        self.bn3 = batch_norm()
        self.setup_shortcut()

    def stages(self, train: bool) -> list[Stage]:
        return self.conv_bn_stages((("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")), train)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def block_names(stage_sizes: tuple[int, ...]) -> list[str]:
    """Names of the residual blocks in order: ['layer1_0', 'layer1_1', ...]."""
    return [f"layer{i + 1}_{j}" for i, n in enumerate(stage_sizes) for j in range(n)]


class ResNet(Staged):
    """ResNet on f32[B, H, W, C] images -> f32[B, num_classes] logits."""

    stage_sizes: tuple[int, ...]
    num_classes: int
    block: str = "basic"
    stem: str = "cifar"
    width: int = 64

    def setup(self):
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")
        block_cls = _BLOCKS[self.block]
        if self.stem == "imagenet":
            self.conv1 = _conv(self.width, 7, 2)
        else:
            self.conv1 = _conv(self.width, 3, 1)
        self.bn1 = batch_norm()
        in_features = self.width
        names = block_names(self.stage_sizes)
        k = 0
        for i, n in enumerate(self.stage_sizes):
            features = self.width * 2**i
            for j in range(n):
                strides = 2 if i > 0 and j == 0 else 1
                out_features = features * block_cls.expansion
                downsample = strides != 1 or in_features != out_features
                setattr(self, names[k], block_cls(features, strides, downsample, name=names[k]))
                in_features = out_features
                k += 1
        self.fc = nn.Dense(self.num_classes)

    def stages(self, train: bool) -> list[Stage]:
        stem: list[Stage] = [
            ("conv1", self.conv1),
            ("bn1", lambda x: nn.relu(self.bn1(x, use_running_average=not train))),
        ]
        if self.stem == "imagenet":
            stem.append(("maxpool", lambda x: nn.max_pool(
                x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))))
        blocks = [(name, getattr(self, name)) for name in block_names(self.stage_sizes)]
        return [*stem, *blocks, ("pool", global_avg_pool), ("fc", self.fc)]


def default_stem(input_shape: tuple[int, int, int]) -> str:
    """'cifar' for images up to 64 pixels a side, else 'imagenet'."""
    return "cifar" if max(input_shape[:2]) <= 64 else "imagenet"


def _last_block_subset(stage_sizes: tuple[int, ...], bns: tuple[str, ...]) -> tuple[str, ...]:
    last = block_names(stage_sizes)[-1]
    return tuple(rf"^params/{last}/{bn}/(scale|bias)$" for bn in bns)


def _make(name: str, stage_sizes: tuple[int, ...], block: str, bns: tuple[str, ...]):
    def factory(*, num_classes: int, input_shape: tuple[int, int, int],
                stem: str | None = None, width: int = 64) -> ModelDef:
        module = ResNet(stage_sizes=stage_sizes, num_classes=num_classes, block=block,
                        stem=stem or default_stem(input_shape), width=width)
        return ModelDef(name=name, module=module, input_shape=tuple(input_shape),
                        num_classes=num_classes,
                        default_subset=_last_block_subset(stage_sizes, bns))
    factory.__doc__ = (f"{name}: kwargs stem ('cifar' | 'imagenet', default from image size) "
                       "and width (64). Default subset: the last two BatchNorms of the last "
                       "block (scale and bias).")
    return factory


# Default subsets: the paper's "last two normalization layers".
register("resnet18", _make("resnet18", (2, 2, 2, 2), "basic", ("bn1", "bn2")))
register("resnet50", _make("resnet50", (3, 4, 6, 3), "bottleneck", ("bn2", "bn3")))

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "block_names", "default_stem"]
