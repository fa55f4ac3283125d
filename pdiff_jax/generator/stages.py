"""The two generator stages as the pipeline calls them: train_autoencoder, train_diffusion.

Each stage resumes from its checkpoints (``<stage>_ckpt``), writes its
finished artifact once (``autoencoder`` / ``diffusion``, see generator.py) and
is skipped when that artifact already exists.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from pdiff_jax.checkpoint import CheckpointError, read_json, restore_pytree, save_pytree, write_json

from . import diffusion as dp
from .generator import (
    AE_DIR,
    AE_META,
    DIFF_DIR,
    DIFF_META,
    build_autoencoder,
    build_denoiser,
    decode_normalized,
    encode_normalized,
    module_kwargs,
    zoo_fingerprint,
)
from .normalize import fit_normalizer, normalize
from .train import (
    TrainSettings,
    ae_train_step,
    diffusion_train_step,
    effective_batch,
    init_state,
    make_optimizer,
    place_tree,
    run_loop,
)


def _settings(section) -> TrainSettings:
    return TrainSettings(**module_kwargs(section))


def _config_dict(config) -> dict:
    return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)


def check_zoo(vectors) -> np.ndarray:
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"the zoo must be f32[K, D] with K, D >= 1; got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise ValueError(f"the zoo has {int(bad.sum())} NaN/inf values in {rows.size} of "
                         f"{x.shape[0]} vectors (first: vector {rows[0]}); remove or "
                         "re-collect those models before training the generator")
    return x.astype(np.float32, copy=False)


def train_autoencoder(vectors, *, config, workdir, key, mesh=None, metrics_fn=None,
                      segments: list[int] | None = None) -> None:
    """Train the parameter autoencoder on the zoo ``f32[K, D]``.

    Writes ``workdir/autoencoder`` (params, normalizer, zoo latents) and
    ``workdir/autoencoder.json``; checkpoints in ``workdir/autoencoder_ckpt``.
    Does nothing if the artifact exists.
    """
    workdir = Path(workdir)
    if (workdir / AE_DIR).exists():
        logging.info("autoencoder artifact exists in %s; skipping", workdir)
        return
    x = check_zoo(vectors)
    K, D = x.shape
    settings = _settings(config.autoencoder.train)
    norm = fit_normalizer(x, segments, **module_kwargs(config.normalization))
    xn = normalize(norm, x).astype(np.float32)
    model = build_autoencoder(D, config)
    k_init, k_train = jax.random.split(key)
    variables = model.init({"params": k_init}, np.zeros((1, D), np.float32), train=False)
    tx = make_optimizer(settings.learning_rate, settings.b1, settings.b2, settings.weight_decay)
    state = place_tree(init_state(variables, tx, ema=settings.ema_decay > 0), mesh)
    step = functools.partial(ae_train_step, model=model, tx=tx,
                             batch_size=effective_batch(settings.batch_size, K, mesh),
                             ema_decay=settings.ema_decay, mesh=mesh)
    state = run_loop(step, state, place_tree(xn, mesh), k_train, settings,
                     ckpt_dir=workdir / "autoencoder_ckpt", desc="autoencoder",
                     metrics_fn=metrics_fn, mesh=mesh)
    params = state.get("ema_params", state["params"])
    variables = {"params": params}
    if "batch_stats" in state:
        variables["batch_stats"] = state["batch_stats"]
    variables = jax.tree.map(np.asarray, variables)
    latents = encode_normalized(model, variables, xn)  # [K, L, C], no noise
    recon = decode_normalized(model, variables, latents)
    err = np.linalg.norm(recon - xn) / max(np.linalg.norm(xn), 1e-30)  # == relative to zoo spread
    raw = recon * norm.std + norm.mean
    rel_raw = np.linalg.norm(raw - x) / max(np.linalg.norm(x), 1e-30)
    meta = {
        "config": _config_dict(config), "D": D, "K": K, "segments": segments,
        "fingerprint": zoo_fingerprint(x), "latent_shape": list(latents.shape[1:]),
        "geometry": model.geometry_meta(),
        "steps": settings.steps,
        # |x_hat - x| / |x| in normalized coordinates, and in raw parameters.
        "rel_recon_error_normalized": float(err), "rel_recon_error": float(rel_raw),
        "latent_abs_max": float(np.abs(latents).max()),
    }
    write_json(workdir / AE_META, meta)
    arrays = dict(variables, normalizer={"mean": norm.mean, "std": norm.std}, latents=latents)
    save_pytree(workdir / AE_DIR, arrays)
    if metrics_fn is not None:
        metrics_fn(settings.steps, {"stage": "autoencoder", "rel_recon_error": float(rel_raw),
                                    "rel_recon_error_normalized": float(err)})


def train_diffusion(*, config, workdir, key, mesh=None, metrics_fn=None) -> None:
    """Train the latent denoiser on the zoo latents stored by :func:`train_autoencoder`.

    Writes ``workdir/diffusion`` (EMA params, latent scale) and
    ``workdir/diffusion.json``; checkpoints in ``workdir/diffusion_ckpt``.
    """
    workdir = Path(workdir)
    if (workdir / DIFF_DIR).exists():
        logging.info("diffusion artifact exists in %s; skipping", workdir)
        return
    if not (workdir / AE_DIR).exists():
        raise CheckpointError(f"no autoencoder under {workdir}; run "
                              "pdiff_jax.generator.train_autoencoder first")
    ae_meta = read_json(workdir / AE_META)
    latents = np.asarray(restore_pytree(workdir / AE_DIR)["latents"], np.float32)
    # Diffusion runs on unit-scale latents; the scale is stored and undone at sampling.
    latent_scale = np.float32(1.0 / max(float(latents.std()), 1e-3))
    data = latents * latent_scale
    settings = _settings(config.diffusion.train)
    sched = dp.linear_schedule(**module_kwargs(config.diffusion.process))
    model = build_denoiser(config)
    k_init, k_train = jax.random.split(key)
    variables = model.init(k_init, data[:1], np.zeros((1,), np.int32))
    tx = make_optimizer(settings.learning_rate, settings.b1, settings.b2, settings.weight_decay)
    state = place_tree(init_state(variables, tx, ema=settings.ema_decay > 0), mesh)
    K = data.shape[0]
    step = functools.partial(diffusion_train_step, sched=sched, model=model, tx=tx,
                             batch_size=effective_batch(settings.batch_size, K, mesh),
                             ema_decay=settings.ema_decay, mesh=mesh)
    state = run_loop(lambda s, d, k: step(s, d, k), state, place_tree(data, mesh), k_train,
                     settings, ckpt_dir=workdir / "diffusion_ckpt", desc="diffusion",
                     metrics_fn=metrics_fn, mesh=mesh)
    params = jax.tree.map(np.asarray, state.get("ema_params", state["params"]))
    write_json(workdir / DIFF_META, {
        "config": _config_dict(config), "steps": settings.steps,
        "latent_scale": float(latent_scale), "ae_fingerprint": ae_meta["fingerprint"],
        "n_params": int(sum(p.size for p in jax.tree.leaves(params))),
    })
    save_pytree(workdir / DIFF_DIR, {"params": params, "latent_scale": latent_scale})
