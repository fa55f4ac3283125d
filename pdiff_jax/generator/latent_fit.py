"""Latent models without diffusion: a Gaussian or a kernel density estimate of the zoo's latents.

The paper's ablation "AE + a Gaussian / KDE in latent space" asks whether the
diffusion model adds anything over a closed-form density of the same latents.
These are kinds of ``generator.diffusion.model`` (``'gaussian'``, ``'kde'``),
so the stage table stays the same: the diffusion stage *fits* instead of
training (``fit_latents``), its artifact holds the fit, and the sample stage
draws from it (``sample_fit``; the DDPM/DDIM sampler settings do not apply,
``clip_denoised`` clips to the autoencoder's latent bound as it does for
diffusion).

- ``gaussian``: one full-covariance Gaussian over the flattened latent
  ``f32[L * C]`` (a small ridge keeps it proper when K < L * C).
- ``kde``: pick a zoo latent uniformly, add Gaussian noise of per-dimension
  std ``bandwidth * std_d`` (``bandwidth = 0``: Scott's rule
  ``K ** (-1 / (d + 4))``). A bandwidth near 0 returns zoo latents: pure
  memorization, the other end of the ablation.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

RIDGE = 1e-6  # added to the covariance's diagonal, relative to its mean variance


@dataclasses.dataclass(frozen=True)
class GaussianFit:
    """``generator.diffusion.model.kind = 'gaussian'`` (no keys of its own)."""

    kind = "gaussian"


@dataclasses.dataclass(frozen=True)
class KDEFit:
    """``generator.diffusion.model.kind = 'kde'``; ``bandwidth``: kernel std relative to each
    dimension's std over the zoo (0: Scott's rule)."""

    bandwidth: float = 0.0
    kind = "kde"



def scott_factor(n: int, d: int) -> float:
    """Scott's rule bandwidth factor ``n ** (-1 / (d + 4))``."""
    return float(n) ** (-1.0 / (d + 4))


def fit_latents(fit, latents) -> tuple[dict, dict]:
    """Fit ``fit`` (a GaussianFit / KDEFit) to the zoo's latents ``f32[K, L, C]``.

    Returns ``(arrays, meta)`` for the diffusion artifact: Gaussian: ``mean f32[d]``,
    ``chol f32[d, d]`` (covariance = chol @ chol.T); KDE: ``centers f32[K, d]``,
    ``kernel_std f32[d]``. ``d = L * C``.
    """
    z = np.asarray(latents, np.float64).reshape(len(latents), -1)  # [K, d]
    K, d = z.shape
    if isinstance(fit, GaussianFit):
        mean = z.mean(0)
        cov = np.cov(z, rowvar=False, bias=True).reshape(d, d) if K > 1 else np.zeros((d, d))
        cov += RIDGE * max(float(np.trace(cov)) / d, 1e-12) * np.eye(d)
        arrays = {"mean": mean.astype(np.float32),
                  "chol": np.linalg.cholesky(cov).astype(np.float32)}
        meta = {"K": K, "d": d}
    elif isinstance(fit, KDEFit):
        factor = float(fit.bandwidth) or scott_factor(K, d)
        kernel_std = factor * z.std(0)
        arrays = {"centers": z.astype(np.float32), "kernel_std": kernel_std.astype(np.float32)}
        meta = {"K": K, "d": d, "bandwidth_factor": factor}
    else:
        raise TypeError(f"not a latent fit: {fit!r}")
    return arrays, meta


def sample_fit(kind: str, arrays: dict, key, n: int, latent_shape, clip: float | None,
               temperature: float = 1.0):
    """``n`` latents ``f32[n, *latent_shape]`` drawn from a fitted latent model.

    Pure function of ``key``; ``clip``: clip every coordinate to ``[-clip, clip]`` (None: no);
    ``temperature`` scales the Gaussian draws (the kernel noise for a KDE).
    """
    if kind == "gaussian":
        mean, chol = jnp.asarray(arrays["mean"]), jnp.asarray(arrays["chol"])
        eps = temperature * jax.random.normal(key, (n, mean.shape[0]))
        z = mean + eps @ chol.T
    elif kind == "kde":
        centers = jnp.asarray(arrays["centers"])
        k_pick, k_noise = jax.random.split(key)
        picked = centers[jax.random.randint(k_pick, (n,), 0, centers.shape[0])]
        z = picked + jnp.asarray(arrays["kernel_std"]) * (
            temperature * jax.random.normal(k_noise, picked.shape))
    else:
        raise ValueError(f"unknown latent fit {kind!r}; expected 'gaussian' or 'kde'")
    if clip is not None:
        z = jnp.clip(z, -clip, clip)
    return np.asarray(z, np.float32).reshape(n, *latent_shape)
