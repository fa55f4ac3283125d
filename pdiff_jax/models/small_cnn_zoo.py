"""The network of the Small CNN Zoo (Unterthiner et al., 2020, "Predicting Neural Network
Accuracy from Weights"; google-research/dnn_predict_accuracy, ``build_cnn`` in
train_network.py), equal to its Keras model:

    3 x [Conv2D(16, 3x3, strides=2, padding='valid', activation)]     # [B, 13|6|2, ., 16]
    -> GlobalAveragePooling2D -> Dense(num_classes)                   # logits [B, 10]

4,970 parameters for 1-channel images and 10 classes (3*3*1*16+16 + 2*(3*3*16*16+16)
+ 16*10+10). The activation (relu, tanh, sigmoid or selu) is one of the zoo's
hyperparameters, so it is a model kwarg: one model per activation. Keras and Flax lay
kernels out alike (conv ``[kh, kw, in, out]``, dense ``[in, out]``) and both convolve by
cross-correlation, so a row of the zoo fills these variables by reshaping alone
(``pdiff_jax.zoo.sources.small_cnn_zoo``). The zoo's networks read images scaled to
[-1, 1]; the importer folds that scaling into ``conv1``, so the network here reads this
library's normalized images.

Split points: ``conv1``, ``conv2``, ``conv3``, ``pool``, ``dense``.
"""

from __future__ import annotations

import flax.linen as nn

from pdiff_jax.config.choices import SMALL_CNN_ZOO_ACTIVATIONS
from pdiff_jax.models.layers import Stage, Staged, global_avg_pool
from pdiff_jax.models.registry import ModelDef, register

# Keras' definitions: jax.nn.selu uses Keras' alpha and scale.
ACTIVATIONS = dict(zip(SMALL_CNN_ZOO_ACTIVATIONS, (nn.relu, nn.tanh, nn.sigmoid, nn.selu),
                       strict=True))


def conv_names(depth: int) -> tuple[str, ...]:
    """The convolutions' module names, in network order: ('conv1', 'conv2', 'conv3')."""
    return tuple(f"conv{i + 1}" for i in range(depth))


class SmallCNNZoo(Staged):
    """f32[B, H, W, C] -> depth x (conv3x3 stride 2 'valid', activation) -> GAP -> logits."""

    num_classes: int
    activation: str = "relu"
    width: int = 16
    depth: int = 3

    def setup(self):
        self.convs = [nn.Conv(self.width, (3, 3), strides=(2, 2), padding="VALID", name=name)
                      for name in conv_names(self.depth)]
        self.dense = nn.Dense(self.num_classes)

    def stages(self, train: bool) -> list[Stage]:
        act = ACTIVATIONS[self.activation]
        convs = [(conv.name, lambda x, conv=conv: act(conv(x))) for conv in self.convs]
        return [*convs, ("pool", global_avg_pool), ("dense", self.dense)]


@register("small_cnn_zoo")
def small_cnn_zoo(*, num_classes: int, input_shape: tuple[int, int, int],
                  activation: str = "relu", width: int = 16, depth: int = 3) -> ModelDef:
    """The Small CNN Zoo's CNN; kwargs ``activation`` (relu | tanh | sigmoid | selu), ``width``
    (16) and ``depth`` (3). Default subset: the entire network."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, not {activation!r}")
    h, w, _ = input_shape
    if min(h, w) < 2 ** (depth + 1) - 1:   # each 'valid' stride-2 conv takes (n - 3) // 2 + 1
        raise ValueError(f"{depth} stride-2 convolutions need images of at least "
                         f"{2 ** (depth + 1) - 1} pixels a side, got {h}x{w}")
    module = SmallCNNZoo(num_classes=num_classes, activation=activation, width=int(width),
                         depth=int(depth))
    return ModelDef(name="small_cnn_zoo", module=module, input_shape=tuple(input_shape),
                    num_classes=num_classes, default_subset=(r"^params/.*$",))
