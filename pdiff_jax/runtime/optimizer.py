"""The optimizer factory every trainer uses, classifiers and generator alike."""

from __future__ import annotations

import functools

import optax

from pdiff_jax.config.choices import OPTIMIZERS, SCHEDULES


@functools.cache
def make_optimizer(*, optimizer: str, lr: float, total_steps: int = 1, momentum: float = 0.9,
                   weight_decay: float = 0.0, schedule: str = "constant",
                   milestones=(0.5, 0.75), b1: float = 0.9, b2: float = 0.999,
                   step_factor: float = 0.1) -> optax.GradientTransformation:
    """SGD with momentum, Adam or AdamW with a constant, cosine or step schedule (the
    rate times ``step_factor`` at each of the ``milestones``, fractions of the steps).

    Used by every trainer, classifiers and generator alike. Cached: equal settings
    give the same (hashable) object, so the steps compiled for it are reused.
    """
    total_steps = max(int(total_steps), 1)
    if schedule == "cosine":
        lr_fn = optax.cosine_decay_schedule(lr, total_steps)
    elif schedule == "step":
        lr_fn = optax.piecewise_constant_schedule(
            lr, {max(1, int(m * total_steps)): step_factor for m in milestones})
    elif schedule == "constant":
        lr_fn = lr
    else:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {SCHEDULES}")
    if optimizer == "sgd":
        # PyTorch-style coupled weight decay, as in the paper's SGD recipe.
        return optax.chain(optax.add_decayed_weights(weight_decay),
                           optax.sgd(lr_fn, momentum=momentum or None))
    if optimizer == "adam":
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr_fn, b1, b2))
    if optimizer == "adamw":
        return optax.adamw(lr_fn, b1=b1, b2=b2, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}; use one of {OPTIMIZERS}")
