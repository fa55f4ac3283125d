"""The permutation structure of the ResNets in :mod:`pdiff_jax.models.resnet`.

A residual connection adds a block's input to its output channel by channel, so
both must be permuted alike: every stretch of the residual stream carries ONE
permutation group (Ainsworth et al. 2023, "Git Re-Basin", their ResNet spec).
That group acts on

  * the output axis of whatever writes the stream: the stem (``conv1``/``bn1``)
    for the stream entering the first block, and in every block the last
    conv + BN and, where present, the shortcut (``downsample_conv`` +
    ``downsample_bn``);
  * the input axis of whatever reads it: the first conv of every block and the
    shortcut conv of a block that opens a new stretch, and the classifier
    ``fc`` after global average pooling (a per-channel mean, so the channels of
    ``fc``'s input are the stream's).

A block with a shortcut conv opens a new stretch (in the registered ResNets: the
first block of every stage after the first, and for the bottleneck also
``layer1_0``, which widens the stem's channels 4x); a block without one adds its
input unchanged and must keep the stream's width. The convs inside a block
(``conv1`` -> ``bn1``, and for the bottleneck ``conv2`` -> ``bn2``) each get
their own group. Everything is read from variable names and shapes, so any
width, stem and block kind give their spec.
"""

from __future__ import annotations

import re

import jax

from pdiff_jax.models.resnet import ResNet
from pdiff_jax.params.subset import variable_paths
from pdiff_jax.zoo.permutation_spec import PermutationSpec

__all__ = ["is_resnet", "resnet_permutation_spec"]

_BLOCK = re.compile(r"^layer(\d+)_(\d+)$")
_INNER = re.compile(r"^(conv|bn)(\d+)$")
_STEM = ("conv1", "bn1")
_SHORTCUT = ("downsample_conv", "downsample_bn")


def is_resnet(model_def) -> bool:
    """Whether ``model_def`` is built on :class:`~pdiff_jax.models.resnet.ResNet`."""
    return isinstance(model_def.module, ResNet)


class _Builder:
    """Accumulates axes/sizes and checks every axis against its group's size."""

    def __init__(self, named: dict):
        self.named = named                      # path -> ShapeDtypeStruct
        self.axes: dict[str, tuple[str | None, ...]] = {}
        self.sizes: dict[str, int] = {}
        self.by_module: dict[str, list[str]] = {}
        for path in named:
            self.by_module.setdefault("/".join(path.split("/")[1:-1]), []).append(path)

    def fail(self, path: str, why: str):
        raise ValueError(f"resnet permutation spec: cannot place variable {path!r} "
                         f"{tuple(self.named[path].shape)}: {why}")

    def open(self, group: str, size: int) -> str:
        self.sizes[group] = size
        return group

    def _check(self, path: str, axis: int, group: str | None):
        size = self.named[path].shape[axis]
        if group is not None and size != self.sizes[group]:
            self.fail(path, f"axis {axis} has {size} channels, group {group!r} "
                             f"has {self.sizes[group]}")

    def kernel(self, module: str, in_group: str | None, out_group: str | None):
        """A conv or dense layer: kernel [..., in, out] and, if it has one, bias [out]."""
        for path in self.by_module.get(module, []):
            leaf = path.rsplit("/", 1)[-1]
            shape = self.named[path].shape
            if leaf == "kernel" and len(shape) >= 2:
                axes = (None,) * (len(shape) - 2) + (in_group, out_group)
            elif leaf == "bias" and len(shape) == 1:
                axes = (out_group,)
            else:
                self.fail(path, f"expected a kernel or bias of layer {module!r}")
            for axis, g in enumerate(axes):
                self._check(path, axis, g)
            self.axes[path] = axes
        if not any(p.endswith("/kernel") for p in self.by_module.get(module, [])):
            raise ValueError(f"resnet permutation spec: layer {module!r} has no kernel")

    def out_channels(self, module: str) -> int:
        path = f"params/{module}/kernel"
        if path not in self.named:
            raise ValueError(f"resnet permutation spec: no variable {path!r}")
        return int(self.named[path].shape[-1])

    def channels(self, module: str, group: str):
        """A normalization layer's per-channel vectors (scale, bias, mean, var)."""
        for path in self.by_module.get(module, []):
            if len(self.named[path].shape) != 1:
                self.fail(path, f"expected a per-channel vector of {module!r}")
            self._check(path, 0, group)
            self.axes[path] = (group,)


def _block_layers(builder: _Builder, block: str) -> tuple[list[int], bool]:
    """The indices k of the block's conv{k}/bn{k} pairs, and whether it has a shortcut conv."""
    convs, shortcut = set(), False
    for module, paths in builder.by_module.items():
        if not module.startswith(block + "/"):
            continue
        name = module[len(block) + 1:]
        inner = _INNER.match(name)
        if inner:
            convs.add(int(inner.group(2)))
        elif name in _SHORTCUT:
            shortcut = True
        else:
            builder.fail(paths[0], f"unknown layer {name!r} in residual block {block!r}")
    if not convs:
        raise ValueError(f"resnet permutation spec: block {block!r} has no convs")
    return sorted(convs), shortcut


def resnet_permutation_spec(model_def) -> PermutationSpec:
    """The permutation groups of a ResNet (see the module docstring).

    Groups: ``P_stream/stem`` (the stream out of the stem), ``P_stream/{block}``
    (a stretch opened by a block with a shortcut conv, e.g. ``P_stream/layer2_0``),
    ``P_{block}/conv{k}`` (a block's inner channels). Raises ValueError naming a
    variable it cannot place.
    """
    shapes = jax.eval_shape(model_def.init, jax.random.key(0))
    named = dict(zip(variable_paths(shapes), jax.tree.leaves(shapes), strict=True))
    b = _Builder(named)

    stream = b.open("P_stream/stem", b.out_channels(_STEM[0]))
    b.kernel(_STEM[0], None, stream)
    b.channels(_STEM[1], stream)

    # Blocks in the order they run: layer1_0, layer1_1, ..., layer2_0, ...
    blocks = {m.split("/")[0] for m in b.by_module if _BLOCK.match(m.split("/")[0])}
    for block in sorted(blocks, key=lambda n: tuple(map(int, _BLOCK.match(n).groups()))):
        convs, has_shortcut = _block_layers(b, block)
        block_in = stream
        if has_shortcut:    # a new stretch of the stream: its writers and readers below
            stream = b.open(f"P_stream/{block}", b.out_channels(f"{block}/{_SHORTCUT[0]}"))
            b.kernel(f"{block}/{_SHORTCUT[0]}", block_in, stream)
            b.channels(f"{block}/{_SHORTCUT[1]}", stream)
        current = block_in
        for k in convs:
            conv = f"{block}/conv{k}"
            out = stream if k == convs[-1] else b.open(f"P_{conv}",
                                                        b.out_channels(conv))
            b.kernel(conv, current, out)    # the last conv's width is checked against the stream
            b.channels(f"{block}/bn{k}", out)
            current = out

    b.kernel("fc", stream, None)
    missing = sorted(set(named) - set(b.axes))
    if missing:
        b.fail(missing[0], "not a stem, residual block or classifier variable "
                            f"({len(missing)} unplaced)")
    return PermutationSpec(b.axes, b.sizes)
