"""Device-resident data (pdiff_jax.data.resident): images stored as bytes that decode
exactly, or as float32 when they are not bytes."""

import jax.numpy as jnp
import numpy as np

from pdiff_jax.data import load_dataset, resident


def test_images_are_stored_as_bytes_that_decode_exactly(digits):
    u = resident.encode_bytes(digits.x_train, digits.mean, digits.std)
    assert u is not None and u.dtype == np.uint8
    back = resident.decode(jnp.asarray(u), jnp.asarray(digits.mean, jnp.float32),
                           jnp.asarray(digits.std, jnp.float32))
    np.testing.assert_allclose(np.asarray(back), digits.x_train, rtol=0, atol=1e-6)
    # Resized images are no bytes: they stay float32, exactly.
    resized = load_dataset("mnist", data_dir=None, max_train=50, max_test=10, image_size=20)
    assert resident.encode_bytes(resized.x_train, resized.mean, resized.std) is None
    data = resident.to_device(resized.x_train, resized.y_train, mean=resized.mean,
                              std=resized.std)
    assert data.images.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(data.images), resized.x_train)
