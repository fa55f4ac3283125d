"""Classifier architectures and their registry.

    from pdiff_jax.models import get_model
    model = get_model("resnet18", num_classes=10, input_shape=(32, 32, 3))
    variables = model.init(jax.random.key(0))
    logits = model.apply(variables, images)                      # f32[B, 10]
    p = model.split_point_for(["params/layer4_1/bn1/scale"])     # 'layer4_1/bn1'
    head = model.apply(variables, images, stop=p)                # frozen part, once
    logits = model.apply(variables, head, start=p)               # cheap tail

New architectures register themselves with `register(name, factory)` (see
`pdiff_jax.models.registry`).
"""

from pdiff_jax.models.layers import Staged
from pdiff_jax.models.registry import (
    ModelDef,
    get_model,
    list_models,
    register,
    variable_paths,
)

__all__ = ["ModelDef", "Staged", "get_model", "list_models", "register", "variable_paths"]
