"""Where a trained generator's latents come from: a latent prior rebuilt from the
diffusion artifact.

Two shapes, one interface (``sample(key, n, settings, ...)`` -> latents in autoencoder
units): :class:`DiffusionPrior`, a trained (optionally accuracy-conditioned) denoiser
and its DDPM process, sampled with DDPM or DDIM; and :class:`FittedPrior`, a Gaussian
or KDE fitted to the zoo's latents (``latent_fit.py``), sampled directly.
``load_prior`` picks one from the artifact's meta, so the generator needs no flags.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import diffusion as dp
from . import latent_fit
from .conditioning import ConditionSettings, as_condition, guided_eps_fn
from .kinds import plain
from .registry import build_denoiser, is_latent_fit
from .sampling import SamplerSettings


def model_is_conditional(model) -> bool:
    return getattr(model, "condition", "none") != "none"


@functools.partial(jax.jit, static_argnames=("model", "shape", "sampler", "steps", "eta",
                                             "clip", "trajectory", "guidance_scale"))
def _sample_latents(params, sched, key, condition=None, temperature=1.0, *, model, shape,
                    sampler, steps, eta, clip, trajectory, guidance_scale=1.0):
    if model_is_conditional(model):
        eps_fn = guided_eps_fn(lambda x, t, c: model.apply({"params": params}, x, t, c),
                               condition, guidance_scale)
    else:
        eps_fn = lambda x, t: model.apply({"params": params}, x, t)
    if sampler == "ddpm":
        return dp.ddpm_sample(eps_fn, sched, key, shape, clip_x0=clip,
                              return_trajectory=trajectory, temperature=temperature)
    return dp.ddim_sample(eps_fn, sched, key, shape, steps=steps, eta=eta, clip_x0=clip,
                          return_trajectory=trajectory, temperature=temperature)


class DiffusionPrior:
    """A trained latent denoiser: DDPM/DDIM sampling on unit-scale latents, with
    classifier-free guidance when it was trained with an accuracy condition."""

    def __init__(self, arrays: dict, meta: dict):
        stored = plain(meta.get("condition", {}))
        self.condition = ConditionSettings(**{f.name: stored[f.name] for f in
                                              dataclasses.fields(ConditionSettings)
                                              if f.name in stored})
        self.denoiser = build_denoiser(num_timesteps=meta["process"]["num_timesteps"],
                                       **plain(meta["model"]),
                                       **self.condition.denoiser_kwargs())
        self.params = arrays["params"]
        self.latent_scale = float(arrays["latent_scale"])
        self.schedule = dp.linear_schedule(**meta["process"])

    def sample(self, key, n: int, latent_shape: tuple, settings: SamplerSettings, *,
               bound: float, condition=None, guidance_scale: float | None = None,
               return_trajectory: bool = False):
        clip = (bound * self.latent_scale
                if settings.clip_denoised and np.isfinite(bound) else None)
        c = as_condition(self.condition, condition, n)
        scale = self.condition.guidance_scale if guidance_scale is None else guidance_scale
        if not float(scale) >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale!r}")
        out = _sample_latents(self.params, self.schedule, key,
                              None if c is None else jnp.asarray(c),
                              jnp.float32(settings.temperature), model=self.denoiser,
                              shape=(n, *latent_shape), sampler=settings.sampler,
                              steps=settings.steps_for(self.schedule.T),
                              eta=float(settings.eta), clip=clip,
                              trajectory=bool(return_trajectory),
                              guidance_scale=float(scale))
        if return_trajectory:
            z, traj = out
            return np.asarray(z) / self.latent_scale, np.asarray(traj) / self.latent_scale
        return np.asarray(out) / self.latent_scale


class FittedPrior:
    """A Gaussian or KDE fitted to the zoo's latents; the DDPM/DDIM settings do not apply,
    ``clip_denoised`` clips to the autoencoder's latent bound as for diffusion."""

    condition = ConditionSettings()   # unconditional

    def __init__(self, arrays: dict, meta: dict):
        self.kind = meta["model"]["kind"]
        self.arrays = arrays

    def sample(self, key, n: int, latent_shape: tuple, settings: SamplerSettings, *,
               bound: float, condition=None, guidance_scale: float | None = None,
               return_trajectory: bool = False):
        as_condition(self.condition, condition, n)   # refuses a condition: unconditional
        clip = bound if settings.clip_denoised and np.isfinite(bound) else None
        z = latent_fit.sample_fit(self.kind, self.arrays, key, n, latent_shape, clip=clip,
                                  temperature=float(settings.temperature))
        # No path from noise: the "trajectory" is the sample alone.
        return (z, z[None]) if return_trajectory else z


def load_prior(arrays: dict, meta: dict) -> DiffusionPrior | FittedPrior:
    """The latent prior stored in a diffusion artifact ``(arrays, meta)``."""
    if is_latent_fit(meta["model"].get("kind", "unet")):
        return FittedPrior(arrays, meta)
    return DiffusionPrior(arrays, meta)
