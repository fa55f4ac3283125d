"""Shared layers (pdiff_jax.models.layers)."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.models.layers import max_pool2


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 5, 4)])
def test_max_pool2_equals_flax_max_pool(shape):
    """layers.max_pool2 (reshape + max, fast to differentiate on CPU) is nn.max_pool."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    np.testing.assert_array_equal(max_pool2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))
