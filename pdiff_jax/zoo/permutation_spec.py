"""Which permutation group acts on which axis of each variable of a network.

A :class:`PermutationSpec` says, for each variable, which permutation group acts
on which axis (``None`` = no permutation). It is derived, not hand-written:
:func:`sequential_permutation_spec` traces the order in which a model calls its
submodules; in a plain chain (conv/dense -> BatchNorm -> ... -> classifier)
every kernel-bearing layer except the last opens a group over its output axis,
the normalization layers after it share that group, and the next kernel's
input axis is permuted by it. An input axis that is a channels-last flattening
of the group (ConvNet-3's [4*4*32, classes] classifier) is recognised by its
length and permuted per channel. ResNets, whose residual stream carries one
group across blocks, get theirs from :mod:`pdiff_jax.zoo.resnet_permutations`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from pdiff_jax.params.subset import variable_paths

# Architectures whose variables form a plain chain (no residual connections, no
# attention): for them the call order alone determines the permutation groups.
SEQUENTIAL_MODELS = ("mlp3", "convnet3", "cnn_bn", "small_cnn_zoo")

_KERNEL_LEAVES = ("kernel",)
# Leaves permuted along their only axis by the group of the preceding kernel.
_CHANNEL_LEAVES = ("bias", "scale", "mean", "var")


@dataclasses.dataclass(frozen=True)
class PermutationSpec:
    """Which permutation group acts on which axis of each variable.

    Attributes:
      axes: variable path ('params/conv2/kernel') -> one entry per axis, a group
        name or None.
      sizes: group name -> number of units (channels) it permutes.
    """

    axes: Mapping[str, tuple[str | None, ...]]
    sizes: Mapping[str, int]

    def groups(self) -> dict[str, list[tuple[str, int]]]:
        """Group name -> [(variable path, axis)] it acts on."""
        out: dict[str, list[tuple[str, int]]] = {g: [] for g in self.sizes}
        for path, axes in self.axes.items():
            for axis, g in enumerate(axes):
                if g is not None:
                    out[g].append((path, axis))
        return out


def _call_order(model_def) -> list[str]:
    """Module paths ('conv1', 'bn1', ...) in the order the model first calls them."""
    order: list[str] = []

    def interceptor(next_fun, args, kwargs, context):
        path = "/".join(context.module.path)
        if path and path not in order:
            order.append(path)
        return next_fun(*args, **kwargs)

    x = jax.ShapeDtypeStruct((1, *model_def.input_shape), jnp.float32)
    # A fresh lambda: a cached trace would skip the Python calls we record.
    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda x: model_def.module.init(jax.random.key(0), x, train=False), x)
    return order


def sequential_permutation_spec(model_def) -> PermutationSpec:
    """The permutation groups of a plain chain of dense/conv and normalization layers.

    Derived from the model's variable tree and call order (see the module
    docstring). Raises ValueError for a variable this rule cannot place.
    """
    shapes = jax.eval_shape(model_def.init, jax.random.key(0))
    named = dict(zip(variable_paths(shapes), jax.tree.leaves(shapes), strict=True))
    by_module: dict[str, list[str]] = {}
    for path in named:
        by_module.setdefault("/".join(path.split("/")[1:-1]), []).append(path)
    layers = [m for m in _call_order(model_def) if m in by_module]
    kernel_layers = [m for m in layers
                     if any(p.endswith("/" + k) for p in by_module[m] for k in _KERNEL_LEAVES)]
    axes: dict[str, tuple[str | None, ...]] = {}
    sizes: dict[str, int] = {}
    current: str | None = None       # group of the activations flowing out of the last layer
    for module in layers:
        is_last_kernel = module == kernel_layers[-1]
        if module in kernel_layers:
            kernel_path = next(p for p in by_module[module] if p.endswith("/kernel"))
            shape = named[kernel_path].shape
            out_group = None if is_last_kernel else f"P_{module}"
            if out_group:
                sizes[out_group] = shape[-1]
            # Kernels are [..., in, out] for both Dense and Conv.
            axes[kernel_path] = (None,) * (len(shape) - 2) + (current, out_group)
            current = out_group
        for path in by_module[module]:
            if path in axes:
                continue
            leaf = path.rsplit("/", 1)[-1]
            if leaf not in _CHANNEL_LEAVES or len(named[path].shape) != 1:
                raise ValueError(f"weight matching: cannot place variable {path!r} "
                                 f"{named[path].shape} in a sequential permutation spec")
            axes[path] = (current,)
    missing = sorted(set(named) - set(axes))
    if missing:
        raise ValueError(f"weight matching: variables outside the traced layers: {missing}")
    return PermutationSpec(axes, sizes)
