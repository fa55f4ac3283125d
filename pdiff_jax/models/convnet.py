"""Small convolutional classifiers: the paper's ConvNet-3 and the default `cnn_bn`.

ConvNet-3 (paper, entire-network experiments): three blocks of
[3x3 conv (with bias) -> BatchNorm -> ReLU -> 2x2 max-pool] with 32 channels,
flattened (4 x 4 x 32 = 512 for 32x32 inputs) into one linear layer.
24,714 parameters for CIFAR-10, 70,884 for CIFAR-100 (running stats not counted).

cnn_bn (this library's default network for the bundled MNIST): three conv blocks
(16, 32, 64 channels) with BatchNorm, global average pooling, a 64-wide dense
layer with BatchNorm, and the classifier. It is built so that the paper's default
subset, the last two normalization layers (`bn3` after the last conv and `bn4`
after the dense layer; 4 x 64 = 256 numbers), lies in a cheap tail: the head up
to `conv3` runs once, the tail works on [B, 7, 7, 64] activations.

Split points: the input of every conv / BN / pooling / dense stage, by name.
"""

from __future__ import annotations

import flax.linen as nn

from pdiff_jax.models.layers import (
    Stage,
    Staged,
    batch_norm,
    flatten,
    global_avg_pool,
    max_pool2,
)
from pdiff_jax.models.registry import ModelDef, register


def _conv3x3(features: int, use_bias: bool) -> nn.Conv:
    return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), use_bias=use_bias)


class ConvNet3(Staged):
    """f32[B, H, W, C] -> 3 x (conv3x3, BN, ReLU, pool2) -> flatten -> f32[B, num_classes]."""

    num_classes: int
    width: int = 32

    def setup(self):
        self.conv1 = _conv3x3(self.width, True)
        self.bn1 = batch_norm()
        self.conv2 = _conv3x3(self.width, True)
        self.bn2 = batch_norm()
        self.conv3 = _conv3x3(self.width, True)
        self.bn3 = batch_norm()
        self.fc = nn.Dense(self.num_classes)

    def stages(self, train: bool) -> list[Stage]:
        def bn_relu_pool(bn):
            return lambda x: max_pool2(nn.relu(bn(x, use_running_average=not train)))

        return [
            ("conv1", self.conv1), ("bn1", bn_relu_pool(self.bn1)),
            ("conv2", self.conv2), ("bn2", bn_relu_pool(self.bn2)),
            ("conv3", self.conv3), ("bn3", bn_relu_pool(self.bn3)),
            ("fc", lambda x: self.fc(flatten(x))),
        ]


class CNNBN(Staged):
    """f32[B, H, W, C] -> conv16/32/64 + BN -> GAP -> dense64 + BN -> f32[B, num_classes]."""

    num_classes: int
    widths: tuple[int, int, int] = (16, 32, 64)
    hidden: int = 64

    def setup(self):
        # No biases before BatchNorm: its shift makes them redundant.
        self.conv1 = _conv3x3(self.widths[0], False)
        self.bn1 = batch_norm()
        self.conv2 = _conv3x3(self.widths[1], False)
        self.bn2 = batch_norm()
        self.conv3 = _conv3x3(self.widths[2], False)
        self.bn3 = batch_norm()
        self.fc1 = nn.Dense(self.hidden, use_bias=False)
        self.bn4 = batch_norm()
        self.fc2 = nn.Dense(self.num_classes)

    def stages(self, train: bool) -> list[Stage]:
        ura = not train
        return [
            ("conv1", self.conv1),
            ("bn1", lambda x: max_pool2(nn.relu(self.bn1(x, use_running_average=ura)))),
            ("conv2", self.conv2),
            ("bn2", lambda x: max_pool2(nn.relu(self.bn2(x, use_running_average=ura)))),
            ("conv3", self.conv3),
            ("bn3", lambda x: nn.relu(self.bn3(x, use_running_average=ura))),
            ("pool", global_avg_pool),
            ("fc1", self.fc1),
            ("bn4", lambda x: nn.relu(self.bn4(x, use_running_average=ura))),
            ("fc2", self.fc2),
        ]


@register("convnet3")
def convnet3(*, num_classes: int, input_shape: tuple[int, int, int],
             width: int = 32) -> ModelDef:
    """ConvNet-3; default subset: the entire network (every parameter)."""
    return ModelDef(name="convnet3", module=ConvNet3(num_classes=num_classes, width=width),
                    input_shape=tuple(input_shape), num_classes=num_classes,
                    default_subset=(r"^params/.*$",))


@register("cnn_bn")
def cnn_bn(*, num_classes: int, input_shape: tuple[int, int, int]) -> ModelDef:
    """cnn_bn; default subset: scale and bias of the last two BatchNorms (bn3, bn4)."""
    return ModelDef(name="cnn_bn", module=CNNBN(num_classes=num_classes),
                    input_shape=tuple(input_shape), num_classes=num_classes,
                    default_subset=(r"^params/bn3/(scale|bias)$", r"^params/bn4/(scale|bias)$"))
