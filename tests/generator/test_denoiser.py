"""The denoiser network (pdiff_jax.generator.denoiser): the timestep embedding, and a
UNet that uses each sample's own timestep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.generator.denoiser import UNet1D, timestep_embedding


def test_timestep_embedding_distinguishes_steps():
    e = timestep_embedding(jnp.array([0, 1, 500]), 16)
    assert e.shape == (3, 16)
    assert not np.allclose(e[0], e[1])


@pytest.mark.parametrize("length", [1, 3])
def test_unet_uses_each_samples_own_timestep(length):
    model = UNet1D(channels=(8, 8), time_dim=16)
    x = jax.random.normal(jax.random.key(0), (3, length, 2))
    t = jnp.array([5, 60, 99])
    params = model.init(jax.random.key(1), x, t)["params"]
    # The output layer is zero-initialized: perturb every weight so the test sees the network.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape)
                                       for p, k in zip(leaves, keys, strict=True)])
    apply = jax.jit(lambda x, t: model.apply({"params": params}, x, t))
    out = apply(x, t)
    assert out.shape == x.shape
    for i in range(3):  # each sample alone with its own t gives the same output
        np.testing.assert_allclose(apply(x[i:i + 1], t[i:i + 1])[0], out[i], atol=1e-5)
    out2 = apply(x, t.at[0].set(0))  # changing sample 0's t changes only sample 0
    assert not np.allclose(out2[0], out[0])
    np.testing.assert_allclose(out2[1:], out[1:], atol=1e-6)
