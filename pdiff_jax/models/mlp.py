"""MLP-3, the paper's small entire-network classifier.

Linear in -> 50 -> 25 -> classes with ReLU between (inputs flattened, NHWC order).

Note on sizes: the paper quotes 39,760 parameters for MLP-3 on MNIST and 155,135
on CIFAR-10, which do not match its own layer list; the layer list gives 40,785
(784*50+50 + 50*25+25 + 25*10+10) and 155,185 (3072 inputs). We follow the
layer list.

Split points: 'fc1' (the images), 'fc2', 'fc3' (the inputs of each layer).
"""

from __future__ import annotations

import flax.linen as nn

from pdiff_jax.models.layers import Stage, Staged, flatten
from pdiff_jax.models.registry import ModelDef, register


class MLP3(Staged):
    """f32[B, H, W, C] -> flatten -> 50 -> 25 -> f32[B, num_classes]."""

    num_classes: int
    hidden: tuple[int, ...] = (50, 25)

    def setup(self):
        self.fc1 = nn.Dense(self.hidden[0])
        self.fc2 = nn.Dense(self.hidden[1])
        self.fc3 = nn.Dense(self.num_classes)

    def stages(self, train: bool) -> list[Stage]:
        return [
            ("fc1", lambda x: nn.relu(self.fc1(flatten(x)))),
            ("fc2", lambda h: nn.relu(self.fc2(h))),
            ("fc3", self.fc3),
        ]


@register("mlp3")
def mlp3(*, num_classes: int, input_shape: tuple[int, int, int],
         hidden: tuple[int, int] = (50, 25)) -> ModelDef:
    """MLP-3; default subset: the entire network (every parameter)."""
    return ModelDef(name="mlp3", module=MLP3(num_classes=num_classes, hidden=tuple(hidden)),
                    input_shape=tuple(input_shape), num_classes=num_classes,
                    default_subset=(r"^params/.*$",))
