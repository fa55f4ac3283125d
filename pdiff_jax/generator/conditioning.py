"""Accuracy-conditioned generation (paper Tab. 6) with classifier-free guidance.

The config section ``generator.condition`` holds exactly the fields of
``ConditionSettings``:

- ``kind``: 'none' (unconditional), 'level' (the index of an accuracy range, the
  paper's one-hot levels) or 'value' (the accuracy itself, a continuous condition);
- ``levels``: range edges in percent, e.g. (75, 85, 90, 92, 95) = 4 levels
  [75, 85), [85, 90), [90, 92), [92, 95]; a zoo member outside every range trains
  only the unconditional ("null") model;
- ``on``: which stored zoo accuracy labels a member: 'test' (as the paper) or 'train';
- ``dropout``: the fraction of training samples whose condition is replaced by the
  null condition, so one network learns eps(x, t, c) and eps(x, t, null) (Ho &
  Salimans, classifier-free guidance);
- ``guidance_scale`` s: at sampling eps = eps(null) + s (eps(c) - eps(null)); s = 0
  is the unconditional model, s = 1 the conditional one, s > 1 sharpens.

Conditions travel as f32[B]: a level index or an accuracy fraction; -1 is null.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.config.choices import CONDITION_KINDS as KINDS
from pdiff_jax.config.choices import CONDITION_ON as ON
from pdiff_jax.runtime import sharding

from .diffusion import Schedule, diffusion_loss
from .train import _apply_update

NULL = -1.0


@dataclasses.dataclass(frozen=True)
class ConditionSettings:
    kind: str = "none"
    levels: tuple = ()
    on: str = "test"
    dropout: float = 0.1
    guidance_scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(float(e) for e in self.levels))
        if self.kind not in KINDS:
            raise ValueError(f"condition kind must be one of {KINDS}, got {self.kind!r}")
        if self.on not in ON:
            raise ValueError(f"condition 'on' must be one of {ON}, got {self.on!r}")
        if self.enabled and (len(self.levels) < 2
                             or list(self.levels) != sorted(set(self.levels))):
            raise ValueError("condition levels must be >= 2 increasing range edges in percent, "
                             f"e.g. (75, 85, 90, 92, 95); got {self.levels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"condition dropout must be in [0, 1), got {self.dropout}")
        if not self.guidance_scale >= 0.0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    @property
    def num_levels(self) -> int:
        return max(len(self.levels) - 1, 0)

    def ranges(self) -> list[tuple[float, float]]:
        """``[(low, high), ...]`` in percent, one per level."""
        return list(zip(self.levels[:-1], self.levels[1:], strict=True))

    def denoiser_kwargs(self) -> dict:
        """The derived keyword arguments of ``denoiser.build``."""
        return {"condition": self.kind, "num_levels": self.num_levels}

    def level_of(self, accuracy) -> np.ndarray:
        """i32[n]: the level of each accuracy (percent), -1 outside every range (the last
        range includes its upper edge)."""
        acc = np.asarray(accuracy, np.float64)
        edges = np.asarray(self.levels)
        idx = np.searchsorted(edges, acc, side="right") - 1
        idx = np.where(acc == edges[-1], self.num_levels - 1, idx)
        return np.where((idx >= 0) & (idx < self.num_levels), idx, -1).astype(np.int32)

    def labels(self, accuracy) -> np.ndarray:
        """f32[n]: the training condition of each zoo member (null outside every range)."""
        acc = np.asarray(accuracy, np.float32)
        level = self.level_of(acc)
        if self.kind == "level":
            return level.astype(np.float32)
        return np.where(level >= 0, acc / 100.0, NULL).astype(np.float32)

    def request(self, level: int) -> float:
        """The user condition (see ``as_condition``) that asks for level ``level``: its
        index (kind 'level'), or its range's middle in percent (kind 'value')."""
        if not 0 <= int(level) < self.num_levels:
            raise ValueError(f"level must be in [0, {self.num_levels}), got {level}")
        if self.kind == "level":
            return float(level)
        low, high = self.ranges()[int(level)]
        return (low + high) / 2.0


def as_condition(settings: ConditionSettings, condition, n: int) -> np.ndarray | None:
    """A user's ``condition`` as f32[n]: None (unconditional: null for every sample), a level
    index (kind 'level'), an accuracy in percent (kind 'value'), or f32[n] of those."""
    if condition is None:
        return None
    if not settings.enabled:
        raise ValueError("this generator was trained without a condition "
                         "(generator.condition.kind='none'); sample with condition=None")
    c = np.broadcast_to(np.asarray(condition, np.float32), (n,)).copy()
    if settings.kind == "level":
        bad = (c != np.round(c)) | (c < 0) | (c >= settings.num_levels)
        if bad.any():
            raise ValueError(f"condition must be a level index in [0, {settings.num_levels}) "
                             f"(ranges {settings.ranges()}), got {condition!r}")
        return c
    if ((c < 0) | (c > 100)).any():
        raise ValueError(f"condition must be an accuracy in percent, got {condition!r}")
    return c / 100.0


def guided_eps_fn(apply, condition, guidance_scale: float):
    """eps(x, t) with classifier-free guidance: ``apply(x, t, c)`` is the denoiser,
    ``condition`` f32[n] (or None: unconditional). eps(null) + s (eps(c) - eps(null))."""
    if condition is None:
        return lambda x, t: apply(x, t, None)
    if guidance_scale == 1.0:   # purely conditional: one network call
        return lambda x, t: apply(x, t, condition)

    def eps(x, t):
        n = x.shape[0]
        both = apply(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                     jnp.concatenate([condition, jnp.full((n,), NULL)]))
        eps_c, eps_u = both[:n], both[n:]
        return eps_u + guidance_scale * (eps_c - eps_u)

    return eps


@functools.partial(jax.jit, donate_argnums=(0,),
                   static_argnames=("model", "tx", "batch_size", "ema_decay", "dropout", "mesh"))
def conditional_diffusion_train_step(state, data, key, sched: Schedule, *, model, tx,
                                     batch_size: int, ema_decay: float, dropout: float,
                                     mesh=None):
    """``generator.train.diffusion_train_step`` with conditions: ``data`` is (latents
    f32[K, L, C], conditions f32[K]); each sample's condition is nulled with probability
    ``dropout``. Returns (state, loss)."""
    latents, conditions = data
    k_batch, k_loss, k_drop = jax.random.split(jax.random.fold_in(key, state["step"]), 3)
    idx = jax.random.permutation(k_batch, latents.shape[0])[:batch_size]
    z0, c = latents[idx], conditions[idx]  # [B, L, C], [B]
    if mesh is not None:
        z0 = jax.lax.with_sharding_constraint(z0, sharding.batch_sharded(mesh))
    c = jnp.where(jax.random.uniform(k_drop, c.shape) < dropout, NULL, c)

    def loss_fn(params):
        return diffusion_loss(lambda x, t: model.apply({"params": params}, x, t, c), sched, z0,
                              k_loss)

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    return _apply_update(state, grads, tx, ema_decay), loss
