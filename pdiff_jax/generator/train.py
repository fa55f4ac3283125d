"""Training of both generator stages: pure, module-level, jitted step functions and one loop.

Step functions take ``(state, data, key)`` and return ``(state, loss)``; the
state (a dict: ``step``, ``params``, ``opt_state``, optionally ``ema_params``
and ``batch_stats``) is donated. All randomness of step s (the batch and the
noise) comes from ``fold_in(key, s)``, so a run resumed from a checkpoint
(which holds the exact state: optimizer moments, EMA, step) ends identical
to an uninterrupted one.

Steps per dispatch (``TrainSettings.steps_per_dispatch``, 0 = the backend's
choice, ``pdiff_jax.runtime.dispatch``): on a GPU a step at D = 2,048 is ~2 ms and the
launch from Python dominates, so k steps run in one ``lax.scan``
(``multi_step``); on XLA CPU a conv weight gradient inside ``lax.scan``
measured ~90x slower than the same step called from Python (CPU_NOTES.md),
so the CPU runs one step per call. Both give the same result: step s draws
its randomness from ``fold_in(key, s)`` wherever it runs.

EMA: ``ema <- d * ema + (1 - d) * params`` with the decay warmed up as
``d = min(ema_decay, (1 + step) / (10 + step))``. With a fixed 0.9999 and a
few thousand steps the EMA would still be ~70% the random initialization;
the warmup makes it track the early weights and reach 0.9999 at ~90k steps.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from pdiff_jax.runtime import dispatch, sharding
from pdiff_jax.runtime.train_loop import resumable_loop

from .autoencoder import reconstruction_loss
from .behaviour import behaviour_loss, mixed_targets
from .diffusion import Schedule, diffusion_loss
from .mixing import mix_rows, pair_mix


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    steps: int = 2000
    batch_size: int = 200
    learning_rate: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    weight_decay: float = 2e-6
    ema_decay: float = 0.0
    log_every: int = 50
    checkpoint_every: int = 500
    steps_per_dispatch: int = 0   # 0 = the backend's choice (pdiff_jax.runtime.dispatch)


def ema_decay_at(step, decay: float):
    """Warmed-up EMA decay min(decay, (1 + step) / (10 + step))."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def init_generator_state(variables: dict, tx, *, ema: bool) -> dict:
    params = variables["params"]
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
    if ema:  # a copy: donating the same buffer twice fails
        state["ema_params"] = jax.tree.map(jnp.array, params)
    if "batch_stats" in variables:
        state["batch_stats"] = variables["batch_stats"]
    return state


def take_batch(data, key, batch_size: int, mesh, *, return_indices: bool = False):
    """A batch of ``batch_size`` distinct rows of ``data`` in random order (and, with
    ``return_indices``, which rows)."""
    idx = jax.random.permutation(key, data.shape[0])[:batch_size]
    batch = data[idx]
    if mesh is not None:
        batch = jax.lax.with_sharding_constraint(batch, sharding.batch_sharded(mesh))
    return (batch, idx) if return_indices else batch


def _apply_update(state, grads, tx, ema_decay, new_batch_stats=None):
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
    if "ema_params" in state:
        d = ema_decay_at(state["step"], ema_decay)
        new["ema_params"] = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p,
                                         state["ema_params"], params)
    if new_batch_stats is not None:
        new["batch_stats"] = new_batch_stats
    return new


@functools.partial(jax.jit, donate_argnums=(0,),
                   static_argnames=("model", "tx", "batch_size", "ema_decay", "mesh",
                                    "behaviour"))
def ae_train_step(state, zoo, key, *, model, tx, batch_size: int,
                  ema_decay: float = 0.0, mesh=None, behaviour=None):
    """One AE step on a batch of the normalized zoo ``f32[K, D]``. Returns (state, loss).

    With ``behaviour`` (``behaviour.Behaviour``), ``zoo`` is a dict: ``x`` the normalized
    zoo, ``teacher`` its logits, and what decoding to networks needs (``behaviour.py``);
    the term's weight follows ``behaviour.scale_at(step)``. With ``behaviour.off`` the
    step is the reconstruction alone (its warm-up: see :func:`run_generator_loop`)."""
    k_batch, k_noise = jax.random.split(jax.random.fold_in(key, state["step"]))
    rows = zoo if behaviour is None else zoo["x"]
    if behaviour is not None and behaviour.off:
        behaviour = None
    x, idx = take_batch(rows, k_batch, batch_size, mesh, return_indices=True)  # [B, D]
    has_bs = "batch_stats" in state

    def loss_fn(params):
        variables = {"params": params}
        if has_bs:
            variables["batch_stats"] = state["batch_stats"]
        # 'losses': extra terms a model sows (the VAE's KL), added to the reconstruction.
        (recon, _), upd = model.apply(variables, x, train=True, rngs={"noise": k_noise},
                                      mutable=["batch_stats", "losses"] if has_bs
                                      else ["losses"])
        extra = sum(jnp.sum(v) for v in jax.tree.leaves(upd.get("losses", {})))
        if behaviour is not None:
            term = behaviour_term(model, variables, x, idx, zoo, behaviour,
                                  jax.random.fold_in(k_noise, 1))
            extra = extra + (term if behaviour.constant else
                             behaviour.scale_at(state["step"]) * term)
        return reconstruction_loss(recon, x) + extra, upd["batch_stats"] if has_bs else None

    (loss, new_bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    return _apply_update(state, grads, tx, ema_decay, new_bs), loss


def _targets_of(teacher, idx):
    """The targets of zoo rows ``idx``: ``teacher`` is ``f32[K, b, C]``, or ``f32[1, b, C]``
    that every member shares (``behaviour.label_targets``)."""
    if teacher.shape[0] == 1:
        return jnp.broadcast_to(teacher, (idx.shape[0], *teacher.shape[1:]))
    return teacher[idx]


def behaviour_term(model, variables, x, idx, zoo, behaviour, key):
    """The behavioural loss of ``settings.members`` batch rows, decoded from their latents
    (or from mixes of them, ``settings.mix``) plus the autoencoder's own latent noise
    (what sampling decodes near), on the images (or ``settings.images_per_step`` of them)."""
    settings = behaviour.settings
    m = min(settings.members, x.shape[0])
    z = model.apply(variables, x[:m], train=False, method="encode")
    teacher = _targets_of(zoo["teacher"], idx[:m])
    if settings.mix > 0:
        z, teacher = mixed_targets(z, teacher, jax.random.fold_in(key, 1), settings.mix)
    z = z + getattr(model, "latent_noise", 0.0) * jax.random.normal(key, z.shape, z.dtype)
    decoded = model.apply(variables, z, train=False, method="decode")
    if settings.images_per_step:   # this step's images, drawn from the whole pool
        pick = jax.random.randint(jax.random.fold_in(key, 2), (settings.images_per_step,), 0,
                                  teacher.shape[1])
        teacher = teacher[:, pick]
        zoo = dict(zoo, inputs=jax.tree.map(lambda a: a[pick], zoo["inputs"]))
    return behaviour_loss(behaviour, decoded, teacher, zoo)


@functools.partial(jax.jit, donate_argnums=(0,),
                   static_argnames=("model", "tx", "batch_size", "ema_decay", "mesh",
                                    "latent_mix"))
def diffusion_train_step(state, latents, key, sched: Schedule, *, model, tx, batch_size: int,
                         ema_decay: float, mesh=None, latent_mix: float = 0.0):
    """One denoiser step on a batch of (scaled) zoo latents ``f32[K, L, C]``; with
    ``latent_mix > 0`` on mixes of random pairs of them (``mixing.py``)."""
    k_batch, k_loss = jax.random.split(jax.random.fold_in(key, state["step"]))
    z0 = take_batch(latents, k_batch, batch_size, mesh)  # [B, L, C]
    if latent_mix > 0:
        k_pair, k_weight = jax.random.split(jax.random.fold_in(k_batch, 1))
        z0 = mix_rows(z0, *pair_mix(k_pair, k_weight, z0.shape[0], latent_mix, z0.dtype))

    def loss_fn(params):
        return diffusion_loss(lambda x, t: model.apply({"params": params}, x, t), sched, z0,
                              k_loss)

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    return _apply_update(state, grads, tx, ema_decay), loss


def effective_batch(batch_size: int, K: int, mesh) -> int:
    b = min(batch_size, K)
    return sharding.round_batch(b, mesh) if mesh is not None else b


def place_tree(tree, mesh):
    if mesh is None:
        return jax.tree.map(jnp.asarray, tree)
    return sharding.replicate(tree, mesh)


def multi_step(step_fn: Callable, steps: int) -> Callable:
    """``steps`` calls of ``step_fn(state, data, key) -> (state, loss)`` in one jitted
    ``lax.scan``; returns ``(state, losses f32[steps])``. Cached per ``(step_fn, steps)``."""
    compiled = _MULTI_STEPS.setdefault(step_fn, {})
    if steps not in compiled:
        def run(state, data, rng):
            return jax.lax.scan(lambda s, _: step_fn(s, data, rng), state, None, length=steps)

        compiled[steps] = jax.jit(run, donate_argnums=(0,))
    return compiled[steps]


# Weak keys: a stage's step function (a partial) and its compiled scans go together.
_MULTI_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def run_generator_loop(step_fn: Callable, state: dict, data, key, settings: TrainSettings, *,
                       ckpt_dir: Path | None, desc: str, metrics_fn=None, mesh=None,
                       first_steps: tuple[int, Callable] | None = None) -> dict:
    """Run ``step_fn(state, data, key) -> (state, loss)`` for ``settings.steps`` steps on
    the shared resumable loop (checkpoints in ``ckpt_dir``, NaN check at each log point),
    ``settings.steps_per_dispatch`` of them per call to the device.

    ``first_steps = (n, fn)``: steps before ``n`` run ``fn`` instead (the behavioural
    term's warm-up). The choice is made here, on the host, because a ``lax.cond`` between
    the two ran a ConvNet-3 step 25x slower on XLA CPU (2.4 s against 0.09 s), as
    ``lax.scan`` does (CPU_NOTES.md). A scanned call that straddles ``n`` runs two scans,
    ``fn`` up to ``n`` and ``step_fn`` after it, so no step before ``n`` ever computes the
    term (a non-finite term scaled by 0 would still be NaN).
    """
    k = dispatch.steps_per_dispatch(settings.steps_per_dispatch)
    switch, first_fn = first_steps if first_steps else (0, step_fn)

    def advance(s, u):
        if k == 1:
            return (first_fn if u < switch else step_fn)(s, data, key)
        end = min(u + k, settings.steps)
        if not u < switch < end:
            return multi_step(first_fn if u < switch else step_fn, end - u)(s, data, key)
        s, before = multi_step(first_fn, switch - u)(s, data, key)
        s, after = multi_step(step_fn, end - switch)(s, data, key)
        return s, jnp.concatenate([before, after])

    return resumable_loop(
        advance, state, total=settings.steps, desc=desc,
        hint=("Try a lower learning rate, and check the zoo for NaN/inf or extreme values."),
        ckpt_dir=ckpt_dir, checkpoint_every=settings.checkpoint_every,
        check_every=settings.log_every, restore=lambda r: place_tree(r, mesh),
        metrics_fn=metrics_fn, units_per_call=k,
        min_checkpoint_seconds=dispatch.min_checkpoint_seconds())
