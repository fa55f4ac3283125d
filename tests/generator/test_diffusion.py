"""The diffusion process (pdiff_jax.generator.diffusion): schedule, q_sample, loss and
the samplers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.generator import diffusion as dp

T = 100
SCHED = dp.linear_schedule(T)
X0 = jnp.linspace(-0.8, 0.8, 12).reshape(3, 4)  # the one point of a "data set"


def oracle_eps(x0):
    """The exact epsilon predictor for a data distribution concentrated on x0."""
    def eps_fn(x, t):
        ab = SCHED.alpha_bars[t].reshape(-1, *([1] * (x.ndim - 1)))
        return (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)
    return eps_fn


def test_linear_schedule_matches_paper_values():
    s = dp.linear_schedule()
    assert s.T == 1000
    np.testing.assert_allclose([s.betas[0], s.betas[-1]], [1e-4, 2e-2], rtol=1e-6)
    ab = np.asarray(s.alpha_bars)
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < 1e-4


def test_q_sample_endpoints():
    key = jax.random.key(0)
    x0 = jnp.ones((4000, 2))
    noise = jax.random.normal(key, x0.shape)
    t0 = jnp.zeros((4000,), jnp.int32)
    np.testing.assert_allclose(dp.q_sample(SCHED, x0, t0, noise), x0, atol=0.05)
    s = dp.linear_schedule()  # at T = 1000, x_T is essentially pure noise
    xT = dp.q_sample(s, x0, jnp.full((4000,), 999), noise)
    np.testing.assert_allclose(xT, noise, atol=0.01)


def test_q_sample_uses_each_samples_timestep():
    x0, noise = jnp.ones((2, 3)), jnp.zeros((2, 3))
    out = dp.q_sample(SCHED, x0, jnp.array([0, T - 1]), noise)
    np.testing.assert_allclose(out[0], np.sqrt(SCHED.alpha_bars[0]), rtol=1e-6)
    np.testing.assert_allclose(out[1], np.sqrt(SCHED.alpha_bars[T - 1]), rtol=1e-6)


def test_loss_is_zero_for_the_oracle_and_one_for_zero_prediction():
    x0 = jnp.broadcast_to(X0, (256, 3, 4))
    oracle = jax.jit(lambda k: dp.diffusion_loss(oracle_eps(X0), SCHED, x0, k))
    assert float(oracle(jax.random.key(0))) < 1e-6
    zero = dp.diffusion_loss(lambda x, t: jnp.zeros_like(x), SCHED, x0, jax.random.key(0))
    assert abs(float(zero) - 1.0) < 0.15  # E|eps|^2 = 1 (3072 draws)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_recover_the_data_point_with_the_oracle(sampler):
    fn = dp.ddpm_sample if sampler == "ddpm" else dp.ddim_sample
    kw = {} if sampler == "ddpm" else {"steps": 10}
    run = jax.jit(lambda k: fn(oracle_eps(X0), SCHED, k, (5, 3, 4), **kw,
                               return_trajectory=True))
    x, traj = run(jax.random.key(1))
    assert x.shape == (5, 3, 4)
    assert traj.shape == ((T if sampler == "ddpm" else 10) + 1, 5, 3, 4)
    np.testing.assert_allclose(traj[-1], x)
    np.testing.assert_allclose(x, jnp.broadcast_to(X0, x.shape), atol=2e-3)
    x_again, _ = run(jax.random.key(1))
    np.testing.assert_array_equal(x, x_again)  # pure function of the key
    x_other, _ = run(jax.random.key(2))
    assert not np.allclose(traj[0], run(jax.random.key(2))[1][0])  # different start noise
    np.testing.assert_allclose(x_other, x, atol=2e-3)


def test_ddpm_clip_bounds_the_prediction():
    x = dp.ddpm_sample(lambda x, t: jnp.zeros_like(x) - 50.0, SCHED, jax.random.key(0),
                       (4, 2, 2), clip_x0=1.0)
    assert np.all(np.abs(np.asarray(x)) <= 1.0 + 1e-5)


def test_ddim_timesteps():
    ts = dp.ddim_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and np.all(np.diff(ts) < 0)
    with pytest.raises(ValueError):
        dp.ddim_timesteps(100, 0)
