"""Building blocks shared by the classifiers: a network made of named stages.

A `Staged` module is an ordered list of named stages. Each stage maps a pytree
("the carry") to a pytree: a leaf stage is a plain function, a nested stage is a
child `Staged` module (for example a residual block, whose inner carry is a dict
holding the block input and an inner activation). The name of a stage is a
*split point*: the place just before that stage runs. Nested points are
'/'-joined (`layer4_1/bn1` is the input of `bn1` inside block `layer4_1`).

    carry = module.apply(v, x, stop='layer4_1/bn1')      # head only
    logits = module.apply(v, carry, start='layer4_1/bn1')  # tail only

so `apply(v, apply(v, x, stop=p), start=p) == apply(v, x)`. The zoo stage uses
this to compute the frozen head once and train only the cheap tail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Carry = Any  # a pytree of arrays
Stage = tuple[str, "Callable[[Carry], Carry] | Staged"]

# Torch defaults (momentum 0.1 -> Linen momentum 0.9, eps 1e-5): converted
# torchvision / timm weights then behave the same as in PyTorch.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# When not None, `Staged.run` appends ('split', name) here before each stage it
# runs (see `record_splits`); used once per model to map variables to stages.
_RECORDER: list | None = None


@contextlib.contextmanager
def record_splits(events: list) -> Iterator[None]:
    """While active, `Staged.run` logs the split points it passes, in order."""
    global _RECORDER
    previous, _RECORDER = _RECORDER, events
    try:
        yield
    finally:
        _RECORDER = previous


def _head(point: str | None) -> tuple[str | None, str | None]:
    """'a/b/c' -> ('a', 'b/c'); 'a' -> ('a', None); None -> (None, None)."""
    if point is None:
        return None, None
    head, _, rest = point.partition("/")
    return head, (rest or None)


class Staged(nn.Module):
    """Base class: subclasses define `stages(train)`; `__call__` runs them.

    Submodules must be created in `setup` (so that `stages` can refer to them),
    and a nested `Staged` stage must be named like its attribute.
    """

    def stages(self, train: bool) -> list[Stage]:
        raise NotImplementedError

    def __call__(self, x: Carry, train: bool = False, start: str | None = None,
                 stop: str | None = None) -> Carry:
        return self.run(x, train, start, stop)

    def run(self, carry: Carry, train: bool, start: str | None, stop: str | None) -> Carry:
        """Runs the stages from split point `start` (inclusive) up to `stop` (exclusive)."""
        stages = self.stages(train)
        names = [name for name, _ in stages]
        start_head, start_rest = _head(start)
        stop_head, stop_rest = _head(stop)
        for head in (start_head, stop_head):
            if head is not None and head not in names:
                raise ValueError(f"{type(self).__name__} has no stage {head!r}; stages: {names}")
        i0 = 0 if start_head is None else names.index(start_head)
        i1 = len(stages) if stop_head is None else names.index(stop_head)
        if i0 > i1:
            raise ValueError(f"start {start!r} comes after stop {stop!r}")
        prefix = "/".join(self.path)
        for i in range(i0, min(i1 + 1, len(stages))):
            name, stage = stages[i]
            inner_start = start_rest if i == i0 else None
            inner_stop = stop_rest if i == i1 else None
            if i == i1 and inner_stop is None:
                break  # stop at the input of stage i1
            # A nested module's first point equals its parent's point: log it once.
            if _RECORDER is not None and (i > 0 or not self.path):
                _RECORDER.append(("split", f"{prefix}/{name}" if prefix else name))
            if isinstance(stage, Staged):
                if stage.name != name:
                    raise ValueError(f"nested stage {name!r} is a module named {stage.name!r}")
                carry = stage.run(carry, train, inner_start, inner_stop)
            else:
                if inner_start is not None or inner_stop is not None:
                    raise ValueError(f"stage {name!r} has no inner split points")
                carry = stage(carry)
            if i == i1:
                break  # stopped inside the nested stage
        return carry


def batch_norm() -> nn.BatchNorm:
    """BatchNorm with torch's defaults; `use_running_average` is given per call."""
    return nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)


def max_pool2(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 max-pool, stride 2: f32[B, H, W, C] -> f32[B, H // 2, W // 2, C].

    A reshape and a max, equal to ``nn.max_pool(x, (2, 2), strides=(2, 2))``: its
    gradient avoids XLA CPU's slow select-and-scatter (a ConvNet-3 training step
    measured ~1.35x faster).
    """
    b, h, w, c = x.shape
    x = x[:, :h - h % 2, :w - w % 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
    """f32[B, H, W, C] -> f32[B, C]."""
    return jnp.mean(x, axis=(1, 2))


def flatten(x: jnp.ndarray) -> jnp.ndarray:
    """f32[B, ...] -> f32[B, prod(...)] (NHWC order)."""
    return x.reshape((x.shape[0], -1))
