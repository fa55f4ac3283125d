"""A trained generator, rebuilt from its stored artifacts: encode, decode, sample.

``TrainedGenerator`` holds the autoencoder (with the zoo normalizer and the
zoo's latents) and, once trained, its latent prior (``priors.py``: a denoiser, or a
density fitted to the latents). The modules are rebuilt
from the keyword arguments stored in the artifacts' meta, so loading needs no
config. ``load_generator(workdir)`` reads ``artifacts.AUTOENCODER`` and
``artifacts.DIFFUSION``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax import artifacts
from pdiff_jax.errors import MismatchError
from pdiff_jax.runtime.checkpoint import CheckpointError

from .conditioning import ConditionSettings
from .kinds import plain
from .normalize import denormalize, normalize, normalizer_from_arrays
from .priors import load_prior
from .registry import build_autoencoder
from .sampling import SamplerSettings

DEFAULT_SAMPLER = SamplerSettings()
TRAIN_HINT = "run `python -m pdiff_jax.main --workdir {workdir} --stages={stage}`"


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


class TrainedGenerator:
    """A trained p-diff generator (parameter autoencoder + latent diffusion)."""

    def __init__(self, ae_arrays: dict, ae_meta: dict, diff_arrays: dict | None = None,
                 diff_meta: dict | None = None, *, zoo=None):
        """``zoo`` f32[K, D]: the zoo the autoencoder was trained on, needed (and only
        read) when its normalizer keeps the principal basis implicit
        (``generator.normalization.basis = 'implicit'``)."""
        self.D = int(ae_meta["D"])
        self.K = int(ae_meta["K"])
        self.fingerprint = ae_meta["fingerprint"]
        self.meta = ae_meta
        ae_kwargs = plain(ae_meta["model"])
        # The AE sees the normalized vector, or its principal coordinates (normalize.py).
        self.ae = build_autoencoder(int(ae_meta.get("input_dim", self.D)), **ae_kwargs)
        # The module's own bound (inf for the identity 'autoencoder': its latents are
        # the normalized parameters themselves).
        self.latent_bound = float(getattr(self.ae, "latent_bound",
                                          ae_kwargs.get("latent_bound", 1.0)))
        self.ae_variables = {"params": ae_arrays["params"]}
        if "batch_stats" in ae_arrays:
            self.ae_variables["batch_stats"] = ae_arrays["batch_stats"]
        self.normalizer = normalizer_from_arrays(ae_arrays["normalizer"], zoo=zoo)
        if self.normalizer.implicit and self.normalizer.zoo is None:
            raise MismatchError("this generator's normalizer keeps its principal basis as "
                                "coefficients over the zoo (normalization.basis='implicit'): "
                                "pass zoo=<the zoo's vectors f32[K, D]>, or load it with "
                                "load_generator(workdir), which reads the run's zoo")
        self.zoo_latents = ae_arrays["latents"]  # f32[K, L, C]
        self.latent_shape = tuple(self.zoo_latents.shape[1:])
        # Where new latents come from: a trained denoiser or a fitted prior (priors.py);
        # None until the diffusion stage has run.
        self.prior = None if diff_arrays is None else load_prior(diff_arrays, diff_meta)
        self.condition = self.prior.condition if self.prior else ConditionSettings()

    @property
    def has_diffusion(self) -> bool:
        return self.prior is not None

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
    def sample_latents(self, key, n: int, settings: SamplerSettings = DEFAULT_SAMPLER, *,
                       return_trajectory: bool = False, condition=None,
                       guidance_scale: float | None = None):
        """n latents f32[n, L, C] (AE units); with ``return_trajectory`` also
        f32[S + 1, n, L, C] (from pure noise to the result). Pure function of ``key``
        (and ``condition``).

        ``condition`` (a conditional generator only): None = unconditional; a level index
        (kind 'level') or an accuracy in percent (kind 'value'), one for all or f32[n].
        ``guidance_scale``: None = the trained setting (``generator.condition``)."""
        if not self.has_diffusion:
            raise CheckpointError("this generator has no diffusion model yet; "
                                  "run the pipeline's 'diffusion' stage first")
        if not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"n must be a positive number of samples, got {n!r}")
        a = float(settings.latent_mix)
        if a == 0:
            return self.prior.sample(key, int(n), self.latent_shape, settings,
                                     bound=self.latent_bound, condition=condition,
                                     guidance_scale=guidance_scale,
                                     return_trajectory=return_trajectory)
        if return_trajectory or condition is not None:
            raise ValueError("sampling.latent_mix > 0 mixes two prior samples, which have no "
                             "single trajectory or condition; use latent_mix=0 for those")
        pairs = self.prior.sample(key, 2 * int(n), self.latent_shape, settings,
                                  bound=self.latent_bound)
        return (1 - a) * pairs[:n] + a * pairs[n:]   # convex: stays inside the latent bound

    def sample(self, key, n: int, settings: SamplerSettings = DEFAULT_SAMPLER, *,
               condition=None, guidance_scale: float | None = None) -> np.ndarray:
        """n generated parameter vectors f32[n, D]. Same key (and condition) -> same
        output; ``condition``/``guidance_scale`` as in ``sample_latents``."""
        return self.decode(self.sample_latents(key, n, settings, condition=condition,
                                               guidance_scale=guidance_scale))

    # -- compatibility -----------------------------------------------------------------
    def check_compatible(self, D: int, vectors=None, fingerprint: str | None = None) -> None:
        """Raise ValueError if D (or the zoo, by its fingerprint) differs from training."""
        if int(D) != self.D:
            raise MismatchError(f"generator was trained on vectors of D = {self.D} parameters, "
                             f"got D = {D}: the parameter subset differs; retrain the "
                             "generator for this subset")
        if vectors is not None:
            fingerprint = zoo_fingerprint(vectors)
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise MismatchError(f"zoo fingerprint {fingerprint} differs from the generator's "
                             f"training zoo {self.fingerprint}; retrain the generator or "
                             "use the zoo it was trained on")


def load_generator(workdir, *, require_diffusion: bool = True, zoo=None) -> TrainedGenerator:
    """The generator trained in the run directory ``workdir``.

    ``zoo``: for a generator whose principal basis is implicit, the zoo's vectors
    f32[K, D] or a function returning them (None: read from the run's zoo artifact);
    not read otherwise. Raises ``CheckpointError`` naming the command that trains a
    missing stage.
    """
    workdir = Path(workdir)
    ae_arrays, ae_meta = artifacts.load_artifact(
        artifacts.artifact_dir(workdir, artifacts.AUTOENCODER), what="autoencoder",
        hint=TRAIN_HINT.format(workdir=workdir, stage="autoencoder,diffusion"))
    vectors = None
    if "coefficients" in ae_arrays["normalizer"]:   # an implicit basis: the zoo is part of it
        if zoo is None:
            from pdiff_jax.zoo.store import load_zoo

            vectors = load_zoo(artifacts.artifact_dir(workdir, artifacts.ZOO)).vectors
        else:
            vectors = zoo() if callable(zoo) else zoo
    diff_dir = artifacts.artifact_dir(workdir, artifacts.DIFFUSION)
    diff_arrays = diff_meta = None
    if artifacts.exists(diff_dir):
        diff_arrays, diff_meta = artifacts.load_artifact(diff_dir, what="diffusion model")
    elif require_diffusion:
        raise CheckpointError(f"no trained diffusion model at {diff_dir}: "
                              + TRAIN_HINT.format(workdir=workdir, stage="diffusion"))
    return TrainedGenerator(ae_arrays, ae_meta, diff_arrays, diff_meta, zoo=vectors)


def sample_and_decode(generator: TrainedGenerator, key, settings: SamplerSettings, *, n: int,
                      trajectories: int = 0,
                      guidance_scale: float | None = None) -> tuple[dict, dict]:
    """The sample stage: ``n`` latents decoded into parameter vectors, plus the decoded
    paths of ``trajectories`` extra samples. Returns ``(arrays, meta)``.

    A conditional generator draws ``n`` per accuracy level (level i from
    ``fold_in(key, 1000 + i)``), concatenated in level order; ``condition_level``
    i32[n * levels] says which level each row asked for."""
    cond = generator.condition
    if cond.enabled:
        per_level = [generator.sample_latents(jax.random.fold_in(key, 1000 + i), n, settings,
                                              condition=cond.request(i),
                                              guidance_scale=guidance_scale)
                     for i in range(cond.num_levels)]
        latents = np.concatenate([np.asarray(z) for z in per_level])
    else:
        latents = np.asarray(generator.sample_latents(key, n, settings))
    vectors = np.asarray(generator.decode(latents), np.float32)
    if not np.all(np.isfinite(vectors)):
        raise FloatingPointError("generated parameters contain NaN/inf: the generator diverged; "
                                 "retrain it with a lower learning rate")
    arrays = {"vectors": vectors, "latents": latents}
    meta = {"sampling": dataclasses.asdict(settings), "n": int(n)}
    if cond.enabled:
        arrays["condition_level"] = np.repeat(np.arange(cond.num_levels, dtype=np.int32), n)
        meta["condition"] = dict(dataclasses.asdict(cond), guidance_scale=float(
            cond.guidance_scale if guidance_scale is None else guidance_scale))
    if trajectories > 0:   # one prior sample's path (a latent mix has none)
        _, path = generator.sample_latents(jax.random.fold_in(key, 1), trajectories,
                                           dataclasses.replace(settings, latent_mix=0.0),
                                           return_trajectory=True)
        arrays["trajectory"] = decode_trajectory(generator, np.asarray(path))
    return arrays, meta


def decode_trajectory(generator: TrainedGenerator, latents: np.ndarray,
                      points: int = 41) -> np.ndarray:
    """Latent path ``f32[S + 1, n, ...]`` -> parameter path ``f32[n, points, D]`` (subsampled)."""
    steps = np.unique(np.linspace(0, len(latents) - 1, points).round().astype(int))
    picked = latents[steps]                                   # [T, n, ...]
    flat = picked.reshape(-1, *picked.shape[2:])
    decoded = np.asarray(generator.decode(flat), np.float32)  # [T * n, D]
    return decoded.reshape(len(steps), picked.shape[1], -1).transpose(1, 0, 2)
