"""The two generator training stages: ``train_autoencoder`` and ``train_diffusion``.

Each takes the arrays it learns from and its config section as plain keyword
arguments (``normalization`` / ``model`` / ``train`` dicts), resumes from
``checkpoint_dir``, and returns ``(arrays, meta)``: the artifact the pipeline
stores (``artifacts.AUTOENCODER`` / ``artifacts.DIFFUSION``) and that
``TrainedGenerator`` is rebuilt from. The meta holds the module keyword
arguments, so loading needs no config.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from pdiff_jax.errors import MismatchError
from pdiff_jax.runtime.optimizer import make_optimizer

from . import diffusion as dp
from .behaviour import Behaviour, behaviour_targets
from .conditioning import ConditionSettings, conditional_diffusion_train_step
from .diagnostics import latent_diagnostics
from .kinds import plain
from .latent_fit import fit_latents
from .normalize import denormalize, fit_normalizer, normalize
from .registry import build_autoencoder, build_denoiser, build_latent_fit, is_latent_fit
from .train import (
    TrainSettings,
    ae_train_step,
    diffusion_train_step,
    effective_batch,
    init_generator_state,
    place_tree,
    run_generator_loop,
)
from .trained import decode_normalized, encode_normalized, zoo_fingerprint


def check_zoo(vectors) -> np.ndarray:
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise MismatchError(f"the zoo must be f32[K, D] with K, D >= 1; got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise MismatchError(f"the zoo has {int(bad.sum())} NaN/inf values in {rows.size} of "
                         f"{x.shape[0]} vectors (first: vector {rows[0]}); remove or "
                         "re-collect those models before training the generator")
    return x.astype(np.float32, copy=False)


def _adamw(settings: TrainSettings, behaviour: Behaviour | None = None):
    """AdamW at the settings' rate; with a behavioural term that sets its own
    ``learning_rate``, that rate from the end of the term's warm-up on."""
    common = dict(optimizer="adamw", lr=settings.learning_rate, b1=settings.b1,
                  b2=settings.b2, weight_decay=settings.weight_decay)
    if behaviour is None or behaviour.settings.learning_rate <= 0:
        return make_optimizer(**common)
    return make_optimizer(**common, schedule="step", total_steps=settings.steps,
                          milestones=(behaviour.settings.warmup,),
                          step_factor=behaviour.settings.learning_rate / settings.learning_rate)


def _final_variables(state) -> dict:
    variables = {"params": state.get("ema_params", state["params"])}
    if "batch_stats" in state:
        variables["batch_stats"] = state["batch_stats"]
    return jax.tree.map(np.asarray, variables)


def train_autoencoder(vectors, *, key, normalization: Mapping, model: Mapping,
                      train: Mapping, segments: list[int] | None = None,
                      behaviour: Behaviour | None = None, behaviour_inputs=None,
                      checkpoint_dir: Path | None = None, mesh=None,
                      metrics_fn=None) -> tuple[dict, dict]:
    """Train the parameter autoencoder on the zoo ``f32[K, D]``.

    ``behaviour`` (with ``behaviour_inputs = (base variables, inputs)``, or
    ``(base variables, inputs, labels)`` for ``settings.target == 'labels'``) adds the
    behavioural term of ``behaviour.py``: decoded networks must match their members'
    logits (or the labels) on those inputs.

    Returns ``(arrays, meta)``: arrays = AE variables, the normalizer (mean/std, and
    the principal basis with ``normalization.components``) and the zoo's latents
    ``f32[K, L, C]``; meta = module kwargs, D, K, zoo fingerprint, reconstruction
    errors, ``input_dim`` (what the AE sees) and ``diagnostics.latent_diagnostics``.
    """
    x = check_zoo(vectors)
    K, D = x.shape
    settings = TrainSettings(**plain(train))
    model_kwargs = plain(model)
    norm = fit_normalizer(x, segments, **plain(normalization))
    xn = normalize(norm, x).astype(np.float32)   # [K, n]: n = D, or the principal components
    ae = build_autoencoder(norm.out_dim, **model_kwargs)
    k_init, k_train = jax.random.split(key)
    variables = ae.init({"params": k_init}, np.zeros((1, norm.out_dim), np.float32),
                        train=False)
    if behaviour is not None:   # its warm-up is a fraction of these steps
        behaviour = dataclasses.replace(behaviour, steps=settings.steps)
    tx = _adamw(settings, behaviour)
    state = place_tree(init_generator_state(variables, tx, ema=settings.ema_decay > 0), mesh)
    step = functools.partial(ae_train_step, model=ae, tx=tx,
                             batch_size=effective_batch(settings.batch_size, K, mesh),
                             ema_decay=settings.ema_decay, mesh=mesh, behaviour=behaviour)
    data = xn
    if behaviour is not None:   # the members' logits once; decoded networks run each step
        base, inputs, *labels = behaviour_inputs
        teacher = behaviour_targets(behaviour, base, x, inputs, *labels)
        data = {"x": xn, "teacher": teacher, "base": base,
                "inputs": inputs, "normalizer": norm}
    warmup = None
    if behaviour is not None and behaviour.first_step > 0:
        warmup = (behaviour.first_step, functools.partial(
            step, behaviour=dataclasses.replace(behaviour, off=True)))
    state = run_generator_loop(step, state, place_tree(data, mesh), k_train, settings,
                               ckpt_dir=checkpoint_dir, desc="autoencoder",
                               metrics_fn=metrics_fn, mesh=mesh, first_steps=warmup)
    variables = _final_variables(state)
    latents = encode_normalized(ae, variables, xn)  # [K, L, C], no noise
    recon = decode_normalized(ae, variables, latents)
    err = np.linalg.norm(recon - xn) / max(np.linalg.norm(xn), 1e-30)  # == relative to spread
    raw = denormalize(norm, recon)
    rel_raw = np.linalg.norm(raw - x) / max(np.linalg.norm(x), 1e-30)
    meta = {
        "model": model_kwargs, "normalization": plain(normalization), "train": plain(train),
        # The settings, with the images the term really ran on (fewer than asked for when
        # the training set is smaller).
        "behaviour": None if behaviour is None else dict(
            dataclasses.asdict(behaviour.settings),
            images=int(jax.tree.leaves(behaviour_inputs[1])[0].shape[0]),
            batch_statistics=behaviour.batch_statistics),
        "D": D, "K": K, "segments": segments, "fingerprint": zoo_fingerprint(x),
        "latent_shape": list(latents.shape[1:]), "geometry": ae.geometry_meta(),
        "steps": settings.steps,
        # |x_hat - x| / |x| in normalized coordinates, and in raw parameters.
        "rel_recon_error_normalized": float(err), "rel_recon_error": float(rel_raw),
        "latent_abs_max": float(np.abs(latents).max()),
        "input_dim": norm.out_dim,   # what the AE sees: D, or the principal components
        **latent_diagnostics(latents, latent_noise=float(model_kwargs.get("latent_noise", 0))),
    }
    if metrics_fn is not None:
        metrics_fn(settings.steps, {"stage": "autoencoder", "rel_recon_error": float(rel_raw),
                                    "rel_recon_error_normalized": float(err)})
    arrays = dict(variables, normalizer=norm.arrays(), latents=latents)
    return arrays, meta


def conditioned_labels(cond: ConditionSettings, accuracies, K: int) -> np.ndarray:
    """f32[K] training conditions from the members' accuracies (percent)."""
    if accuracies is None or np.shape(accuracies) != (K,):
        raise MismatchError(f"a conditional generator needs one accuracy per zoo member "
                            f"(K = {K}), got {None if accuracies is None else np.shape(accuracies)}"
                            "; re-run the collect stage so the zoo stores its accuracies")
    labels = cond.labels(accuracies)
    if (labels < 0).all():
        raise MismatchError(f"no zoo member lies in any generator.condition.levels range "
                            f"{cond.ranges()} (zoo accuracies {np.min(accuracies):.2f}.."
                            f"{np.max(accuracies):.2f}%); set levels that cover the zoo")
    return labels


def train_diffusion(latents, *, key, process: Mapping, model: Mapping, train: Mapping,
                    condition: Mapping | None = None, accuracies=None,
                    ae_fingerprint: str = "", checkpoint_dir: Path | None = None, mesh=None,
                    metrics_fn=None, latent_mix: float = 0.0) -> tuple[dict, dict]:
    """Train the latent denoiser on the zoo's latents ``f32[K, L, C]`` (``latent_mix > 0``:
    on mixes of random pairs of them, ``a ~ U(0, latent_mix)``; unconditional only).

    ``condition`` is the ``generator.condition`` section; when its kind is not 'none',
    ``accuracies`` f32[K] (percent, the zoo's ``condition.on`` accuracy) label the
    members and the denoiser learns with classifier-free condition dropout.
    Returns ``(arrays, meta)``: arrays = denoiser EMA params and the latent scale;
    meta = process and module kwargs, condition settings, steps, parameter count. For
    ``model.kind`` 'gaussian' or 'kde' the latents are fitted instead
    (``latent_fit.fit_latents``: its arrays).
    """
    latents = np.asarray(latents, np.float32)
    if is_latent_fit(plain(model).get("kind", "unet")):   # a closed-form fit, no training
        arrays, fit_meta = fit_latents(build_latent_fit(**plain(model)), latents)
        return arrays, {"process": plain(process), "model": plain(model), "steps": 0,
                        "ae_fingerprint": ae_fingerprint, "fit": fit_meta, "n_params": 0}
    # Diffusion runs on unit-scale latents; the scale is stored and undone at sampling.
    latent_scale = np.float32(1.0 / max(float(latents.std()), 1e-3))
    data = latents * latent_scale
    settings = TrainSettings(**plain(train))
    sched = dp.linear_schedule(**plain(process))
    cond = ConditionSettings(**plain(condition or {}))
    denoiser = build_denoiser(num_timesteps=sched.T, **plain(model),
                                  **cond.denoiser_kwargs())
    k_init, k_train = jax.random.split(key)
    variables = denoiser.init(k_init, data[:1], np.zeros((1,), np.int32))
    tx = _adamw(settings)
    state = place_tree(init_generator_state(variables, tx, ema=settings.ema_decay > 0), mesh)
    step_kw = dict(sched=sched, model=denoiser, tx=tx, ema_decay=settings.ema_decay, mesh=mesh,
                   batch_size=effective_batch(settings.batch_size, len(data), mesh))
    cond_meta = {}
    if cond.enabled and latent_mix > 0:
        raise ValueError("diffusion.latent_mix > 0 trains the prior on mixes of members, "
                         "whose accuracy level is unknown; it needs condition.kind='none'")
    if cond.enabled:
        labels = conditioned_labels(cond, accuracies, len(data))
        cond_meta = {"members_per_level": np.bincount(
            cond.level_of(accuracies)[cond.level_of(accuracies) >= 0],
            minlength=cond.num_levels).tolist(), "unlabelled": int((labels < 0).sum())}
        step = functools.partial(conditional_diffusion_train_step, dropout=cond.dropout,
                                 **step_kw)
        data = (data, labels)
    else:
        step = functools.partial(diffusion_train_step, latent_mix=float(latent_mix), **step_kw)
    state = run_generator_loop(step, state, place_tree(data, mesh), k_train, settings,
                               ckpt_dir=checkpoint_dir, desc="diffusion",
                               metrics_fn=metrics_fn, mesh=mesh)
    params = _final_variables(state)["params"]
    meta = {"process": plain(process), "model": plain(model), "train": plain(train),
            "condition": dict(dataclasses.asdict(cond), **cond_meta),
            "steps": settings.steps, "latent_scale": float(latent_scale),
            "latent_mix": float(latent_mix), "ae_fingerprint": ae_fingerprint,
            "n_params": int(sum(p.size for p in jax.tree.leaves(params)))}
    return {"params": params, "latent_scale": latent_scale}, meta
