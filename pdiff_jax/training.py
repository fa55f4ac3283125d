"""Supervised training of the classifiers whose parameters form the zoo.

Pure, module-level step functions over an explicit ``TrainState``; the loop
around them shards batches over the device mesh, shows a tqdm bar, writes
metrics and resumes from per-epoch checkpoints.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from pdiff_jax import sharding
from pdiff_jax.checkpoint import TrainCheckpoints

MetricsFn = Callable[[int, dict], None]


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any   # {} for networks without BatchNorm
    opt_state: Any
    step: jax.Array


@functools.cache
def make_optimizer(*, optimizer: str, lr: float, total_steps: int, momentum: float = 0.9,
                   weight_decay: float = 0.0, schedule: str = "constant",
                   milestones=(0.5, 0.75)) -> optax.GradientTransformation:
    """SGD with momentum, Adam or AdamW with a constant, cosine or step schedule.

    Cached: equal settings give the same object, so the steps compiled for it
    are reused (a seed zoo trains K models with one compilation).
    """
    total_steps = max(int(total_steps), 1)
    if schedule == "cosine":
        lr_fn = optax.cosine_decay_schedule(lr, total_steps)
    elif schedule == "step":
        lr_fn = optax.piecewise_constant_schedule(
            lr, {max(1, int(m * total_steps)): 0.1 for m in milestones})
    elif schedule == "constant":
        lr_fn = optax.constant_schedule(lr)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; use cosine, step or constant")
    if optimizer == "sgd":
        # PyTorch-style coupled weight decay, as in the paper's SGD recipe.
        return optax.chain(optax.add_decayed_weights(weight_decay),
                           optax.sgd(lr_fn, momentum=momentum or None))
    if optimizer == "adam":
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr_fn))
    if optimizer == "adamw":
        return optax.adamw(lr_fn, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}; use sgd, adam or adamw")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def init_state(variables: dict, tx: optax.GradientTransformation) -> TrainState:
    params = variables["params"]
    return TrainState(params, variables.get("batch_stats", {}), tx.init(params),
                      jnp.zeros((), jnp.int32))


def variables_of(state: TrainState) -> dict:
    out = {"params": state.params}
    if state.batch_stats:
        out["batch_stats"] = state.batch_stats
    return out


def train_step(state: TrainState, x: jax.Array, y: jax.Array, *, model_def,
               tx: optax.GradientTransformation) -> tuple[TrainState, dict]:
    """One SGD step on a batch ``x: f32[B, H, W, C]``, ``y: i32[B]``."""

    def loss_fn(params):
        variables = {"params": params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        logits, updates = model_def.apply(variables, x, train=True)
        return cross_entropy(logits, y), (logits, updates.get("batch_stats", {}))

    (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    return TrainState(params, new_stats, opt_state, state.step + 1), {"loss": loss,
                                                                      "accuracy": accuracy}


def _check_finite(loss, step: int, desc: str, params=None) -> None:
    """Raise if the loss (or, given ``params``, any parameter) is NaN/inf."""
    bad = f"loss is {loss}" if not np.isfinite(loss) else None
    if bad is None and params is not None and not bool(jax.tree.reduce(
            jnp.logical_and, jax.tree.map(lambda p: jnp.isfinite(p).all(), params))):
        bad = "the parameters became NaN/inf"  # the loss is computed before the update
    if bad:
        raise FloatingPointError(f"{desc}: {bad} at step {step}; lower the learning rate "
                                 "(zoo.lr) or check the data for NaNs")


@functools.cache
def compiled_train_step(model_def, tx: optax.GradientTransformation, batched: bool = False):
    """``train_step`` jitted once per architecture and optimizer (vmapped if ``batched``)."""
    step = functools.partial(train_step, model_def=model_def, tx=tx)
    return jax.jit(jax.vmap(step) if batched else step, donate_argnums=0)


def train_classifier(model_def, variables: dict, x: np.ndarray, y: np.ndarray, *, epochs: int,
                     batch_size: int, seed: int, optimizer: str, lr: float,
                     momentum: float = 0.9, weight_decay: float = 0.0,
                     schedule: str = "constant", milestones=(0.5, 0.75), augment: str = "",
                     mesh=None, checkpoint_dir: Path | None = None,
                     metrics_fn: MetricsFn | None = None, desc: str = "train") -> dict:
    """Train ``variables`` on ``(x, y)`` for ``epochs``; returns the trained variables.

    With ``checkpoint_dir`` the state is saved after every epoch and an
    interrupted call resumes from the last good epoch.
    """
    from pdiff_jax.data import iterate_batches

    mesh = mesh or sharding.make_mesh()
    batch_size = sharding.round_batch(batch_size, mesh)
    steps_per_epoch = len(x) // batch_size
    tx = make_optimizer(optimizer=optimizer, lr=lr, total_steps=epochs * steps_per_epoch,
                        momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                        milestones=tuple(milestones))
    state = sharding.replicate(init_state(variables, tx), mesh)
    step_fn = compiled_train_step(model_def, tx)

    ckpts = TrainCheckpoints(checkpoint_dir) if checkpoint_dir else None
    start_epoch = 0
    if ckpts:
        done, restored = ckpts.restore_latest(state)
        if restored is not None:
            state = sharding.replicate(TrainState(*restored), mesh)
            start_epoch = done
    try:
        for epoch in range(start_epoch, epochs):
            batches = iterate_batches(x, y, batch_size, seed=seed, epoch=epoch, mesh=mesh,
                                      augment=augment or None)
            bar = tqdm(batches, total=steps_per_epoch, desc=f"{desc} epoch {epoch + 1}/{epochs}",
                       leave=False, mininterval=1.0)
            for xb, yb in bar:
                state, metrics = step_fn(state, xb, yb)
                if int(state.step) % 50 == 0:
                    metrics = jax.device_get(metrics)
                    _check_finite(metrics["loss"], int(state.step), desc)
                    bar.set_postfix(loss=f"{metrics['loss']:.3f}",
                                    acc=f"{metrics['accuracy']:.3f}")
                    if metrics_fn:
                        metrics_fn(int(state.step), {f"{desc}/{k}": float(v)
                                                     for k, v in metrics.items()})
            if steps_per_epoch:  # also at the epoch's end: a diverged state is never saved
                _check_finite(jax.device_get(metrics["loss"]), int(state.step), desc,
                              params=state.params)
            if ckpts:
                ckpts.save(epoch + 1, state)
    finally:
        if ckpts:
            ckpts.close()
    return jax.device_get(variables_of(state))


def train_classifiers_batched(model_def, seeds: list[int], x: np.ndarray, y: np.ndarray, *,
                              epochs: int, batch_size: int, optimizer: str, lr: float,
                              momentum: float = 0.9, weight_decay: float = 0.0,
                              schedule: str = "constant", milestones=(0.5, 0.75),
                              augment: str = "", mesh=None,
                              metrics_fn: MetricsFn | None = None) -> list[dict]:
    """Train one network per seed (its own initialisation and data order).

    With one seed this is ``train_classifier``. With several, the models are
    stacked on a leading axis and trained by one vmapped step; that axis is
    sharded across devices when it divides evenly. On a CPU vmap pays off for
    MLPs and loses for convnets (measured: see benchmarks/), hence the choice
    is the caller's (``zoo.models_per_step``).
    """
    from pdiff_jax.data import iterate_batches

    common = dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                  momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                  milestones=milestones, augment=augment, mesh=mesh)
    if len(seeds) == 1:
        variables = jax.device_get(model_def.init(jax.random.key(seeds[0])))
        return [train_classifier(model_def, variables, x, y, seed=seeds[0],
                                 metrics_fn=metrics_fn, desc=f"model {seeds[0]}", **common)]
    mesh = mesh or sharding.make_mesh()
    steps_per_epoch = len(x) // batch_size
    tx = make_optimizer(optimizer=optimizer, lr=lr, total_steps=epochs * steps_per_epoch,
                        momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                        milestones=tuple(milestones))
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    variables = jax.vmap(lambda k: model_def.init(jax.random.wrap_key_data(k)))(keys)
    state = jax.vmap(lambda v: init_state(v, tx))(variables)
    place = (sharding.shard_batch if len(seeds) % mesh.devices.size == 0
             else sharding.replicate)
    state = place(state, mesh)
    step_fn = compiled_train_step(model_def, tx, batched=True)
    for epoch in range(epochs):
        streams = [iterate_batches(x, y, batch_size, seed=s, epoch=epoch, augment=augment or None)
                   for s in seeds]
        bar = tqdm(zip(*streams, strict=True), total=steps_per_epoch, leave=False,
                   desc=f"{len(seeds)} models epoch {epoch + 1}/{epochs}", mininterval=1.0)
        for batches in bar:
            xb = place(jnp.stack([b[0] for b in batches]), mesh)
            yb = place(jnp.stack([b[1] for b in batches]), mesh)
            state, metrics = step_fn(state, xb, yb)
        metrics = sharding.to_host(metrics)
        if not np.all(np.isfinite(metrics["loss"])):
            raise FloatingPointError(f"seed zoo: loss is not finite in epoch {epoch + 1}; "
                                     "lower zoo.lr")
        if metrics_fn:
            metrics_fn(int(state.step[0]), {"seed/loss": float(np.mean(metrics["loss"])),
                                            "seed/accuracy": float(np.mean(metrics["accuracy"]))})
    stacked = sharding.to_host(variables_of(state))
    return [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(len(seeds))]
