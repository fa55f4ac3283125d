"""The trained generator: artifacts on disk, module rebuilding, encode/decode/sample.

Artifacts under a workdir (written by :mod:`pdiff_jax.generator.stages`):
  autoencoder/       Orbax: params (+ batch_stats), normalizer mean/std, zoo latents
  autoencoder.json   config, D, K, segments, zoo fingerprint, geometry, metrics
  diffusion/         Orbax: denoiser EMA params, latent_scale
  diffusion.json     config, metrics
The modules are rebuilt from the stored config, so loading needs no config.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pdiff_jax.checkpoint import CheckpointError, read_json, restore_pytree

from . import autoencoder as ae_lib
from . import denoiser as denoiser_lib
from . import diffusion as dp
from .normalize import Normalizer, denormalize, normalize

AE_DIR, AE_META = "autoencoder", "autoencoder.json"
DIFF_DIR, DIFF_META = "diffusion", "diffusion.json"
SAMPLERS = ("ddpm", "ddim")


def module_kwargs(section) -> dict:
    """A config section -> hashable keyword arguments (lists become tuples)."""
    d = section.to_dict() if isinstance(section, ml_collections.ConfigDict) else dict(section)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def build_autoencoder(D: int, config):
    """The autoencoder module of ``config.autoencoder.model.kind`` ('conv' when absent,
    as in artifacts written before the key existed)."""
    return ae_lib.build(D, **module_kwargs(config.autoencoder.model))


def build_denoiser(config):
    """The denoiser of ``config.diffusion.model.kind`` ('unet' when absent, as in older
    artifacts)."""
    return denoiser_lib.build(num_timesteps=config.diffusion.process.num_timesteps,
                              **module_kwargs(config.diffusion.model))


def zoo_fingerprint(vectors) -> str:
    """sha256 of the zoo's float32 bytes and shape (detects a different zoo)."""
    x = np.ascontiguousarray(vectors, np.float32)
    h = hashlib.sha256(str(x.shape).encode())
    h.update(x.tobytes())
    return h.hexdigest()[:16]


def chunk_rows(D: int) -> int:
    """Rows per encode/decode call: bounded so one chunk stays ~256 MB."""
    return int(max(1, min(256, 2**26 // max(D, 1))))


@functools.partial(jax.jit, static_argnames=("model",))
def _encode(variables, x, *, model):
    return model.apply(variables, x, train=False, method="encode")


@functools.partial(jax.jit, static_argnames=("model",))
def _decode(variables, z, *, model):
    return model.apply(variables, z, train=False, method="decode")


def _chunked(fn, x, rows: int):
    """Apply fn to fixed-size chunks (last one padded: one compilation)."""
    n = x.shape[0]
    out = []
    for i in range(0, n, rows):
        c = x[i:i + rows]
        k = c.shape[0]
        if k < rows and n > rows:
            c = np.concatenate([c, np.repeat(c[-1:], rows - k, 0)], 0)
        out.append(np.asarray(fn(c))[:k])
    return np.concatenate(out, 0)


def encode_normalized(model, variables, xn) -> np.ndarray:
    return _chunked(lambda c: _encode(variables, jnp.asarray(c), model=model), xn,
                    chunk_rows(model.D))


def decode_normalized(model, variables, z) -> np.ndarray:
    return _chunked(lambda c: _decode(variables, jnp.asarray(c), model=model), z,
                    chunk_rows(model.D))


@functools.partial(jax.jit, static_argnames=("model", "shape", "sampler", "steps", "eta",
                                             "clip", "trajectory"))
def _sample_latents(params, sched, key, *, model, shape, sampler, steps, eta, clip, trajectory):
    eps_fn = lambda x, t: model.apply({"params": params}, x, t)
    if sampler == "ddpm":
        return dp.ddpm_sample(eps_fn, sched, key, shape, clip_x0=clip,
                              return_trajectory=trajectory)
    return dp.ddim_sample(eps_fn, sched, key, shape, steps=steps, eta=eta, clip_x0=clip,
                          return_trajectory=trajectory)


class Generator:
    """A trained p-diff generator (autoencoder + latent diffusion)."""

    def __init__(self, *, ae_meta: dict, ae_arrays: dict, diff_meta: dict | None = None,
                 diff_arrays: dict | None = None):
        self.config = ml_collections.ConfigDict(ae_meta["config"])
        self.D = int(ae_meta["D"])
        self.K = int(ae_meta["K"])
        self.fingerprint = ae_meta["fingerprint"]
        self.segments = ae_meta.get("segments")
        self.meta = ae_meta
        self.ae = build_autoencoder(self.D, self.config)
        self.ae_variables = {"params": ae_arrays["params"]}
        if "batch_stats" in ae_arrays:
            self.ae_variables["batch_stats"] = ae_arrays["batch_stats"]
        self.normalizer = Normalizer(ae_arrays["normalizer"]["mean"],
                                     ae_arrays["normalizer"]["std"])
        self.zoo_latents = ae_arrays["latents"]  # f32[K, L, C]
        self.latent_shape = tuple(self.zoo_latents.shape[1:])
        self.has_diffusion = diff_arrays is not None
        if self.has_diffusion:
            dcfg = ml_collections.ConfigDict(diff_meta["config"])
            self.diffusion_config = dcfg
            self.denoiser = build_denoiser(dcfg)
            self.denoiser_params = diff_arrays["params"]
            self.latent_scale = float(diff_arrays["latent_scale"])
            self.schedule = dp.linear_schedule(**module_kwargs(dcfg.diffusion.process))
            self.sampling_defaults = module_kwargs(dcfg.sampling)

    # -- autoencoder -------------------------------------------------------------------
    def encode(self, vectors) -> np.ndarray:
        """f32[n, D] parameter vectors -> f32[n, L, C] latents (deterministic, no noise)."""
        x = np.asarray(vectors, np.float32)
        self.check_compatible(x.shape[-1])
        return encode_normalized(self.ae, self.ae_variables, normalize(self.normalizer, x))

    def decode(self, latents) -> np.ndarray:
        """f32[n, L, C] latents -> f32[n, D] de-normalized parameter vectors."""
        z = np.asarray(latents, np.float32)
        return denormalize(self.normalizer, decode_normalized(self.ae, self.ae_variables, z))

    # -- diffusion ---------------------------------------------------------------------
    def sample_latents(self, key, n: int, *, sampler: str | None = None,
                       steps: int | None = None, eta: float | None = None,
                       clip_denoised: bool | None = None, return_trajectory: bool = False):
        """n latents f32[n, L, C] (AE units); with ``return_trajectory`` also
        f32[S + 1, n, L, C] (from pure noise to the result). Pure function of ``key``."""
        if not self.has_diffusion:
            raise CheckpointError("this generator has no diffusion model; run "
                                  "pdiff_jax.generator.train_diffusion first")
        if int(n) <= 0:
            raise ValueError(f"n must be positive, got {n}")
        d = self.sampling_defaults
        sampler = d["sampler"] if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        steps = d["steps"] if steps is None else steps
        if sampler == "ddpm" and steps not in (None, self.schedule.T):
            raise ValueError(f"ddpm runs all T = {self.schedule.T} steps; use sampler='ddim' "
                             f"for {steps} steps")
        if sampler == "ddim":
            steps = 50 if steps is None else int(steps)
        eta = float(d["eta"] if eta is None else eta)
        clip = d["clip_denoised"] if clip_denoised is None else clip_denoised
        bound = float(self.config.autoencoder.model.latent_bound) * self.latent_scale
        out = _sample_latents(self.denoiser_params, self.schedule, key, model=self.denoiser,
                              shape=(int(n), *self.latent_shape), sampler=sampler,
                              steps=steps if sampler == "ddim" else None, eta=eta,
                              clip=bound if clip else None, trajectory=bool(return_trajectory))
        if return_trajectory:
            z, traj = out
            return np.asarray(z) / self.latent_scale, np.asarray(traj) / self.latent_scale
        return np.asarray(out) / self.latent_scale

    def sample(self, key, n: int, *, return_trajectory: bool = False, **kw):
        """n generated parameter vectors f32[n, D]; with ``return_trajectory`` a tuple
        (vectors, latent trajectory f32[S + 1, n, L, C]). Same key -> same output."""
        out = self.sample_latents(key, n, return_trajectory=return_trajectory, **kw)
        if return_trajectory:
            return self.decode(out[0]), out[1]
        return self.decode(out)

    # -- compatibility -----------------------------------------------------------------
    def check_compatible(self, D: int, vectors=None, fingerprint: str | None = None) -> None:
        """Raise ValueError if D (or the zoo, by its fingerprint) differs from training."""
        if int(D) != self.D:
            raise ValueError(f"generator was trained on vectors of D = {self.D} parameters, "
                             f"got D = {D}: the parameter subset differs; retrain the "
                             "generator for this subset")
        if vectors is not None:
            fingerprint = zoo_fingerprint(vectors)
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise ValueError(f"zoo fingerprint {fingerprint} differs from the generator's "
                             f"training zoo {self.fingerprint}; retrain the generator or "
                             "use the zoo it was trained on")


def load_generator(workdir, *, require_diffusion: bool = True) -> Generator:
    """Load the generator trained under ``workdir``.

    Raises ``CheckpointError`` naming the function that trains the missing stage.
    """
    workdir = Path(workdir)
    if not (workdir / AE_DIR).exists() or not (workdir / AE_META).exists():
        raise CheckpointError(
            f"no trained autoencoder under {workdir} (expected {workdir / AE_DIR}); train one "
            "with pdiff_jax.generator.train_autoencoder(vectors, config=..., workdir=...) "
            "(the pipeline's generator stage), then train_diffusion")
    ae_meta = read_json(workdir / AE_META)
    ae_arrays = restore_pytree(workdir / AE_DIR)
    diff_meta = diff_arrays = None
    if (workdir / DIFF_DIR).exists() and (workdir / DIFF_META).exists():
        diff_meta = read_json(workdir / DIFF_META)
        diff_arrays = restore_pytree(workdir / DIFF_DIR)
    elif require_diffusion:
        raise CheckpointError(
            f"no trained diffusion model under {workdir} (expected {workdir / DIFF_DIR}); "
            "train it with pdiff_jax.generator.train_diffusion(config=..., workdir=...)")
    return Generator(ae_meta=ae_meta, ae_arrays=ae_arrays, diff_meta=diff_meta,
                     diff_arrays=diff_arrays)
