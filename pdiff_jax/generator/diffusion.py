"""The DDPM process on latents, apart from the network (schedule, q_sample, loss, samplers).

``eps_fn(x_t, t) -> eps`` is any epsilon predictor: ``x_t`` f32[B, ...],
``t`` int32[B] (each sample its own timestep, 0-based: t = 0 is the first
noising step). Samplers are one ``lax.scan`` each and pure functions of the key.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Schedule(NamedTuple):
    betas: jax.Array  # f32[T]
    alphas: jax.Array  # f32[T], 1 - beta
    alpha_bars: jax.Array  # f32[T], prod_{s<=t} alpha_s

    @property
    def T(self) -> int:
        return self.betas.shape[0]


def linear_schedule(num_timesteps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 2e-2) -> Schedule:
    """Linear betas (Ho et al. 2020), computed in float64 on the host for accuracy."""
    import numpy as np

    betas = np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
    alphas = 1.0 - betas
    alpha_bars = np.cumprod(alphas)
    return Schedule(*(jnp.asarray(a, jnp.float32) for a in (betas, alphas, alpha_bars)))


def _bcast(v, x):
    """v f32[B] -> f32[B, 1, ..., 1] to broadcast against x f32[B, ...]."""
    return v.reshape(v.shape + (1,) * (x.ndim - 1))


def q_sample(sched: Schedule, x0, t, noise):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t int32[B]."""
    ab = _bcast(sched.alpha_bars[t], x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def diffusion_loss(eps_fn, sched: Schedule, x0, key):
    """Simple epsilon-prediction loss: E_{t, eps} |eps - eps_fn(x_t, t)|^2 (mean over all)."""
    k_t, k_eps = jax.random.split(key)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, sched.T)  # one t per sample
    noise = jax.random.normal(k_eps, x0.shape, x0.dtype)
    eps_hat = eps_fn(q_sample(sched, x0, t, noise), t)
    return jnp.mean((eps_hat - noise) ** 2)


def predict_x0(sched: Schedule, x_t, t, eps):
    ab = _bcast(sched.alpha_bars[t], x_t)
    return (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def _clip(x, clip):
    return x if clip is None else jnp.clip(x, -clip, clip)


def ddpm_sample(eps_fn, sched: Schedule, key, shape, *, clip_x0: float | None = None,
                return_trajectory: bool = False, temperature: float = 1.0):
    """Ancestral sampling over all T steps, posterior variance beta_tilde.

    Returns x_0 f32[shape], and with ``return_trajectory`` also f32[T + 1, *shape]
    (x_T first, x_0 last). ``clip_x0`` clips the predicted x_0 to [-clip, clip];
    ``temperature`` scales x_T and every step's noise (1: the model's distribution).
    """
    k_init, k_steps = jax.random.split(key)
    x_T = temperature * jax.random.normal(k_init, shape)
    n = shape[0]
    ab_prev_all = jnp.concatenate([jnp.ones((1,)), sched.alpha_bars[:-1]])

    def step(x, t):
        tb = jnp.full((n,), t, jnp.int32)
        eps = eps_fn(x, tb)
        x0 = _clip(predict_x0(sched, x, tb, eps), clip_x0)
        ab, ab_prev, beta, alpha = (sched.alpha_bars[t], ab_prev_all[t], sched.betas[t],
                                    sched.alphas[t])
        # Posterior q(x_{t-1} | x_t, x_0): mean c0 x0 + ct x_t, variance beta_tilde.
        c0 = jnp.sqrt(ab_prev) * beta / (1.0 - ab)
        ct = jnp.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab)
        var = beta * (1.0 - ab_prev) / (1.0 - ab)
        z = jax.random.normal(jax.random.fold_in(k_steps, t), shape)
        x_prev = c0 * x0 + ct * x + jnp.where(t > 0, jnp.sqrt(var), 0.0) * (temperature * z)
        return x_prev, (x_prev if return_trajectory else None)

    x0, traj = jax.lax.scan(step, x_T, jnp.arange(sched.T - 1, -1, -1))
    if return_trajectory:
        return x0, jnp.concatenate([x_T[None], traj], axis=0)
    return x0


def ddim_timesteps(T: int, steps: int):
    """``steps`` evenly spaced timesteps from T-1 down to 0 (inclusive)."""
    if not 1 <= steps <= T:
        raise ValueError(f"DDIM steps must be in [1, {T}], got {steps}")
    import numpy as np

    return np.unique(np.round(np.linspace(0, T - 1, steps)).astype(np.int32))[::-1].copy()


def ddim_sample(eps_fn, sched: Schedule, key, shape, *, steps: int = 50, eta: float = 0.0,
                clip_x0: float | None = None, return_trajectory: bool = False,
                temperature: float = 1.0):
    """DDIM (Song et al. 2021) over ``steps`` timesteps; eta = 0 is deterministic given x_T.

    Returns x_0, and with ``return_trajectory`` also f32[steps + 1, *shape];
    ``temperature`` scales x_T and the eta noise.
    """
    ts = jnp.asarray(ddim_timesteps(sched.T, steps))
    t_prev = jnp.concatenate([ts[1:], jnp.array([-1], jnp.int32)])
    k_init, k_steps = jax.random.split(key)
    x_T = temperature * jax.random.normal(k_init, shape)
    n = shape[0]

    def step(x, tt):
        t, tp = tt
        eps = eps_fn(x, jnp.full((n,), t, jnp.int32))
        ab = sched.alpha_bars[t]
        ab_prev = jnp.where(tp >= 0, sched.alpha_bars[jnp.maximum(tp, 0)], 1.0)
        x0 = _clip((x - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab), clip_x0)
        eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)  # consistent with a clipped x0
        sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        z = jax.random.normal(jax.random.fold_in(k_steps, t), shape)
        x_prev = (jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0))
                  * eps + sigma * (temperature * z))
        return x_prev, (x_prev if return_trajectory else None)

    x0, traj = jax.lax.scan(step, x_T, (ts, t_prev))
    if return_trajectory:
        return x0, jnp.concatenate([x_T[None], traj], axis=0)
    return x0
