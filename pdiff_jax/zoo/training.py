"""Every classifier training loop of pdiff_jax, on the one loop of ``train_loop``.

- ``train_classifier``: one whole network for some epochs (the subset-mode base
  model, and one seed-zoo member at a time);
- ``train_classifiers_batched``: several networks from several seeds in one
  vmapped step (seed zoos of small MLPs);
- ``train_subset_snapshots``: only a subset of one network trained further,
  with a snapshot every few steps (the subset zoo, and fine-tuned originals).

Step functions are pure and module-level, over an explicit state, jitted once per
architecture and optimizer. Batches are functions of ``(seed, epoch)`` or
``(seed, step)``, so every loop resumes exactly from its checkpoints.

Throughput options of ``train_classifier`` (``pdiff_jax.runtime.dispatch`` picks them per
backend): the training set may live on the device (``data.resident``: batches
gathered and augmented inside the step, k steps per call in one ``lax.scan``),
and ``precision='bf16'`` computes the forward and backward pass in bfloat16
while parameters and optimizer state stay float32.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdiff_jax.config.choices import PRECISIONS
from pdiff_jax.data import resident
from pdiff_jax.data.batches import epoch_batches, iterate_batches, step_batch
from pdiff_jax.params.spec import is_statistic
from pdiff_jax.params.subset import ParamSpec, flatten_subset, merge, unflatten_subset
from pdiff_jax.runtime import dispatch, sharding
from pdiff_jax.runtime.optimizer import make_optimizer
from pdiff_jax.runtime.train_loop import MetricsFn, resumable_loop

LR_HINT = "Lower the learning rate (zoo.lr / zoo.subset_lr) or check the data for NaNs."


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any   # {} for networks without BatchNorm
    opt_state: Any
    step: jax.Array


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def init_train_state(variables: dict, tx: optax.GradientTransformation) -> TrainState:
    params = variables["params"]
    return TrainState(params, variables.get("batch_stats", {}), tx.init(params),
                      jnp.zeros((), jnp.int32))


def variables_of(state: TrainState) -> dict:
    out = {"params": state.params}
    if state.batch_stats:
        out["batch_stats"] = state.batch_stats
    return out


def _in_precision(tree, precision: str):
    """Floating leaves of ``tree`` cast to the compute dtype (``'f32'``: unchanged)."""
    if precision == "f32":
        return tree
    if precision != "bf16":
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return jax.tree.map(lambda a: a.astype(jnp.bfloat16)
                        if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def train_step(state: TrainState, x: jax.Array, y: jax.Array, *, model_def,
               tx: optax.GradientTransformation,
               precision: str = "f32") -> tuple[TrainState, dict]:
    """One step on a batch ``x: f32[B, H, W, C]``, ``y: i32[B]``.

    With ``precision='bf16'`` parameters, BatchNorm statistics and inputs enter the
    model as bfloat16 (BN statistics too, or Flax would promote every activation
    after a BN back to float32); the gradients, the update and the new statistics
    are float32.
    """

    def loss_fn(params):
        variables = {"params": params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        logits, updates = model_def.apply(_in_precision(variables, precision),
                                          _in_precision(x, precision), train=True)
        logits = logits.astype(jnp.float32)
        stats = jax.tree.map(lambda a: a.astype(jnp.float32), updates.get("batch_stats", {}))
        return cross_entropy(logits, y), (logits, stats)

    (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    return TrainState(params, new_stats, opt_state, state.step + 1), {"loss": loss,
                                                                      "accuracy": accuracy}


@functools.cache
def compiled_train_step(model_def, tx: optax.GradientTransformation, batched: bool = False,
                        precision: str = "f32"):
    """``train_step`` jitted once per architecture and optimizer (vmapped if ``batched``)."""
    step = functools.partial(train_step, model_def=model_def, tx=tx, precision=precision)
    return jax.jit(jax.vmap(step) if batched else step, donate_argnums=0)


@functools.cache
def compiled_resident_steps(model_def, tx: optax.GradientTransformation, *, batch_size: int,
                            augment: str | None, steps: int, precision: str, mesh):
    """``steps`` train steps on device-resident data in one call (a ``lax.scan`` if > 1).

    The returned function maps ``(state, data, order, key, first)`` to
    ``(state, losses f32[steps])``: step ``first + j`` trains on batch ``first + j``
    of the epoch's ``order``, augmented with ``fold_in(key, first + j)``, so k steps
    per call and k single calls give the same state.
    """
    shard = (sharding.batch_sharded(mesh)
             if mesh is not None and batch_size % mesh.devices.size == 0 else None)

    def one(state, data, order, key, s):
        x, y = resident.draw_batch(data, order, s, key, batch_size=batch_size, augment=augment)
        if shard is not None:
            x, y = jax.lax.with_sharding_constraint((x, y), shard)
        state, metrics = train_step(state, x, y, model_def=model_def, tx=tx,
                                    precision=precision)
        return state, metrics["loss"]

    def run(state, data, order, key, first):
        if steps == 1:
            state, loss = one(state, data, order, key, first)
            return state, loss[None]
        return jax.lax.scan(lambda st, j: one(st, data, order, key, first + j), state,
                            jnp.arange(steps))

    return jax.jit(run, donate_argnums=0)


def _loss_unless_diverged(loss, params):
    """``loss``, or NaN if any parameter is NaN/inf (the loss is computed before the update)."""
    finite = jax.tree.reduce(jnp.logical_and, jax.tree.map(lambda p: jnp.isfinite(p).all(),
                                                           params))
    return jnp.where(finite, loss, jnp.nan)


def _optimizer_for(optimizer, lr, steps, momentum, weight_decay, schedule, milestones):
    return make_optimizer(optimizer=optimizer, lr=lr, total_steps=steps, momentum=momentum,
                          weight_decay=weight_decay, schedule=schedule,
                          milestones=tuple(milestones))


def train_classifier(model_def, variables: dict, x: np.ndarray, y: np.ndarray, *, epochs: int,
                     batch_size: int, seed: int, optimizer: str, lr: float,
                     momentum: float = 0.9, weight_decay: float = 0.0,
                     schedule: str = "constant", milestones=(0.5, 0.75), augment: str = "",
                     data_placement: str = "host", steps_per_dispatch: int = 1,
                     precision: str = "f32", data_stats: tuple = ((), ()), mesh=None,
                     checkpoint_dir: Path | None = None,
                     metrics_fn: MetricsFn | None = None, desc: str = "train") -> dict:
    """Train ``variables`` on ``(x, y)`` for ``epochs``; returns the trained variables.

    With ``checkpoint_dir`` the state is saved after every epoch and an
    interrupted call resumes from the last good epoch. ``data_placement``
    ('auto', 'host', 'device') and ``steps_per_dispatch`` (0 = auto) follow
    ``pdiff_jax.runtime.dispatch``; ``data_stats = (mean, std)`` of the normalization lets
    device-resident images be stored as bytes. Host and device placement train
    on the same batches; without augmentation they compute the same steps.
    """
    mesh = mesh or sharding.make_mesh()
    batch_size = sharding.round_batch(batch_size, mesh)
    steps_per_epoch = len(x) // batch_size
    tx = _optimizer_for(optimizer, lr, epochs * steps_per_epoch, momentum, weight_decay,
                        schedule, milestones)
    on_device = dispatch.use_device_data(data_placement, x.nbytes + y.nbytes)
    if on_device:
        data = resident.to_device(x, y, mean=data_stats[0], std=data_stats[1], mesh=mesh)
        k = max(1, min(dispatch.steps_per_dispatch(steps_per_dispatch), steps_per_epoch))

        def epoch(state, e):
            order = sharding.replicate(np.concatenate(epoch_batches(
                len(x), batch_size, seed=seed, epoch=e, shuffle=True, drop_remainder=True)),
                mesh)
            key = jax.random.fold_in(jax.random.key(seed), e)   # the epoch's augmentation
            losses = []
            for first in range(0, steps_per_epoch, k):
                run = compiled_resident_steps(
                    model_def, tx, batch_size=batch_size, augment=augment or None,
                    steps=min(k, steps_per_epoch - first), precision=precision, mesh=mesh)
                state, loss = run(state, data, order, key, first)
                losses.append(loss)
            loss = jnp.mean(jnp.concatenate(losses)) if losses else jnp.zeros(())
            return state, _loss_unless_diverged(loss, state.params)
    else:
        step_fn = compiled_train_step(model_def, tx, precision=precision)

        def epoch(state, e):
            losses = []
            for xb, yb in iterate_batches(x, y, batch_size, seed=seed, epoch=e, mesh=mesh,
                                          augment=augment or None):
                state, metrics = step_fn(state, xb, yb)
                losses.append(metrics["loss"])
            loss = jnp.mean(jnp.stack(losses)) if losses else jnp.zeros(())
            return state, _loss_unless_diverged(loss, state.params)

    state = resumable_loop(
        epoch, sharding.replicate(init_train_state(variables, tx), mesh), total=epochs,
        desc=desc, unit="epoch", hint=LR_HINT, ckpt_dir=checkpoint_dir,
        restore=lambda r: sharding.replicate(TrainState(*r), mesh), metrics_fn=metrics_fn,
        min_checkpoint_seconds=dispatch.min_checkpoint_seconds())
    return sharding.to_host(variables_of(state))


def train_classifiers_batched(model_def, seeds: list[int], x: np.ndarray, y: np.ndarray, *,
                              epochs: int, batch_size: int, optimizer: str, lr: float,
                              momentum: float = 0.9, weight_decay: float = 0.0,
                              schedule: str = "constant", milestones=(0.5, 0.75),
                              augment: str = "", data_placement: str = "host",
                              steps_per_dispatch: int = 1, precision: str = "f32",
                              data_stats: tuple = ((), ()), mesh=None,
                              metrics_fn: MetricsFn | None = None) -> list[dict]:
    """Train one network per seed (its own initialisation and data order).

    With one seed this is ``train_classifier``. With several, the models are
    stacked on a leading axis and trained by one vmapped step; that axis is
    sharded across devices when it divides evenly. On a CPU vmap pays off for
    MLPs and loses for convnets (measured: see benchmarks/), hence the choice
    is the caller's (``zoo.models_per_step``).
    """
    common = dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                  momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                  milestones=milestones, augment=augment, mesh=mesh)
    if len(seeds) == 1:
        variables = jax.device_get(model_def.init(jax.random.key(seeds[0])))
        return [train_classifier(model_def, variables, x, y, seed=seeds[0],
                                 metrics_fn=metrics_fn, desc=f"model {seeds[0]}", **common)]
    mesh = mesh or sharding.make_mesh()
    tx = _optimizer_for(optimizer, lr, epochs * (len(x) // batch_size), momentum, weight_decay,
                        schedule, milestones)
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    variables = jax.vmap(lambda k: model_def.init(jax.random.wrap_key_data(k)))(keys)
    place = (sharding.shard_batch if len(seeds) % mesh.devices.size == 0
             else sharding.replicate)
    step_fn = compiled_train_step(model_def, tx, batched=True, precision=precision)

    def epoch(state, e):
        streams = [iterate_batches(x, y, batch_size, seed=s, epoch=e, augment=augment or None)
                   for s in seeds]
        metrics = {"loss": jnp.zeros(len(seeds))}
        for batches in zip(*streams, strict=True):
            xb = place(jnp.stack([b[0] for b in batches]), mesh)
            yb = place(jnp.stack([b[1] for b in batches]), mesh)
            state, metrics = step_fn(state, xb, yb)
        return state, metrics["loss"]   # f32[G]: every model's last loss

    state = resumable_loop(epoch, place(jax.vmap(lambda v: init_train_state(v, tx))(variables),
                                        mesh),
                           total=epochs, desc=f"{len(seeds)} models", unit="epoch",
                           hint=LR_HINT, metrics_fn=metrics_fn)
    stacked = sharding.to_host(variables_of(state))
    return [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(len(seeds))]


# ----------------------------------------------------------------------------- subset


def _trained_coordinates(spec: ParamSpec) -> np.ndarray | None:
    """f32[D]: 1 where the vector holds a parameter, 0 where it holds a BatchNorm running
    statistic (an entire network's vector has both); None when it holds no statistics."""
    trained = [not is_statistic(name) for name in spec.names]
    if all(trained):
        return None
    return np.repeat(np.asarray(trained, np.float32), spec.segments)


def _subset_step(vector, opt_state, base, inputs, labels, *, model_def, spec, start, tx,
                 batch_norm):
    def loss_fn(vec):
        variables = merge(base, unflatten_subset(vec, spec))
        if batch_norm == "train":   # batch statistics, running ones updated, as seed training
            logits, moved = model_def.apply(variables, inputs, train=True, start=start)
            return cross_entropy(logits, labels), flatten_subset({**variables, **moved}, spec)
        logits = model_def.apply(variables, inputs, train=False, start=start)
        return cross_entropy(logits, labels), vec

    (loss, moved), grad = jax.value_and_grad(loss_fn, has_aux=True)(vector)
    updates, opt_state = tx.update(grad, opt_state, vector)
    trained = _trained_coordinates(spec)
    if trained is None:
        return vector + updates, opt_state, loss
    # Statistics are not parameters: a gradient step on a variance can make it negative
    # (NaN). They keep their value, or in training mode take the forward pass's update.
    return jnp.where(trained > 0, vector + updates, moved), opt_state, loss


def batch_norm_mode(spec: ParamSpec, split) -> str:
    """How further training of ``spec``'s vectors treats BatchNorm: 'train' for an entire
    network that holds its running statistics (trained in training mode, like its seed
    training), 'frozen' for a subset (trained on top of a fixed network's statistics)."""
    holds_statistics = any(map(is_statistic, spec.names))
    return "train" if split is None and holds_statistics else "frozen"


@functools.cache
def _compiled_subset_step(model_def, spec, split, tx, batch_norm):
    return jax.jit(functools.partial(_subset_step, model_def=model_def, spec=spec, start=split,
                                     tx=tx, batch_norm=batch_norm), donate_argnums=(0, 1))


def train_subset_snapshots(model_def, variables, spec: ParamSpec, split, tail_inputs, labels,
                           *, num_snapshots: int, save_every: int, optimizer: str, lr: float,
                           batch_size: int, seed: int, momentum: float = 0.9, mesh=None,
                           checkpoint_dir: Path | None = None, checkpoint_every: int = 50,
                           metrics_fn: MetricsFn | None = None, desc: str = "subset",
                           stop_after: int | None = None,
                           batch_norm: str = "frozen") -> np.ndarray:
    """Keep training only the subset; return ``num_snapshots`` snapshots ``f32[K, D]``.

    ``tail_inputs`` are the cached activations entering ``split`` (or the
    images when ``split`` is None). ``batch_norm='frozen'``: BatchNorm statistics stay
    as they are (eval-mode forward; a vector that holds them keeps them), so a subset's
    snapshots are trained on the objective they are evaluated on. ``'train'``: batch
    statistics in the forward pass and the running ones updated, as an entire network
    was trained (see :func:`batch_norm_mode`); eval-mode steps on a whole BatchNorm
    network diverge at learning rates its training used (cnn_bn: 12 % after 20 steps
    at 0.01).
    One snapshot every ``save_every`` steps. ``stop_after`` ends the call after
    that many snapshots (a time-sliced job); with ``checkpoint_dir`` the next
    call resumes from there.
    """
    mesh = mesh or sharding.make_mesh()
    batch_size = sharding.round_batch(min(batch_size, len(labels)), mesh)
    tx = make_optimizer(optimizer=optimizer, lr=lr, momentum=momentum,
                        total_steps=num_snapshots * save_every)
    if batch_norm not in ("frozen", "train"):
        raise ValueError(f"batch_norm={batch_norm!r}: use 'frozen' or 'train'")
    step_fn = _compiled_subset_step(model_def, spec, split, tx, batch_norm)
    base = sharding.replicate(variables, mesh)
    vector = jnp.asarray(flatten_subset(variables, spec))

    def place(state):
        return dict(state, vector=sharding.replicate(jnp.asarray(state["vector"]), mesh),
                    opt_state=sharding.replicate(state["opt_state"], mesh))

    def snapshot(state, count):
        vec, opt_state, loss = state["vector"], state["opt_state"], None
        for k in range(save_every):
            idx = step_batch(len(labels), batch_size, seed=seed, step=count * save_every + k)
            xb = sharding.shard_batch(jax.tree.map(lambda a, idx=idx: a[idx], tail_inputs), mesh)
            yb = sharding.shard_batch(labels[idx], mesh)
            vec, opt_state, loss = step_fn(vec, opt_state, base, xb, yb)
        state["snapshots"][count] = sharding.to_host(vec)
        return dict(state, vector=vec, opt_state=opt_state), loss

    state = {"vector": vector, "opt_state": tx.init(vector),
             "snapshots": np.zeros((num_snapshots, spec.size), np.float32)}
    end = num_snapshots if stop_after is None else min(stop_after, num_snapshots)
    state = resumable_loop(snapshot, place(state), total=end, desc=f"{desc} snapshots",
                           unit="snapshot", hint=LR_HINT, ckpt_dir=checkpoint_dir,
                           checkpoint_every=checkpoint_every, check_every=10,
                           restore=lambda r: place(dict(r, snapshots=np.array(r["snapshots"]))),
                           metrics_fn=metrics_fn)
    return state["snapshots"]

