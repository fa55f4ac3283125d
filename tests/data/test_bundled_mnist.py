"""The bundled MNIST (pdiff_jax.data.bundled_mnist): the .npz is the full MNIST, and it
loads through TFDS into the given data dir, normalized with MNIST's statistics."""

import pathlib

import numpy as np

from pdiff_jax.data.bundled_mnist import NPZ_PATH

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


# The value of a black (0) pixel after MNIST normalization.
MNIST_BLACK = (0.0 - MNIST_MEAN) / MNIST_STD


def test_bundled_npz_is_full_mnist():
    with np.load(NPZ_PATH) as f:
        assert {k: f[k].shape for k in f.files} == {
            "x_train": (60000, 28, 28),
            "y_train": (60000,),
            "x_test": (10000, 28, 28),
            "y_test": (10000,),
        }
        assert all(f[k].dtype == np.uint8 for k in f.files)
        assert np.bincount(f["y_train"]).tolist() == MNIST_TRAIN_COUNTS
        assert np.bincount(f["y_test"]).tolist() == MNIST_TEST_COUNTS
        assert f["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
        assert abs(f["x_train"].mean() / 255 - MNIST_MEAN) < 1e-3


def test_bundled_mnist_loads_through_tfds(mnist_full, data_dir):
    ds = mnist_full
    assert ds.source == "bundled" and ds.num_classes == 10
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_val.shape == (0, 28, 28, 1) and ds.y_val.shape == (0,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.y_test).tolist() == MNIST_TEST_COUNTS
    # Normalized with MNIST's statistics: mean 0, std 1, and the [0, 1] range mapped.
    assert abs(float(ds.x_train.mean())) < 0.01 and abs(float(ds.x_train.std()) - 1) < 0.01
    np.testing.assert_allclose(ds.x_train.min(), MNIST_BLACK, rtol=1e-5)
    np.testing.assert_allclose(ds.x_train.max(), (1 - MNIST_MEAN) / MNIST_STD, rtol=1e-5)
    assert ds.mean == (MNIST_MEAN,) and ds.std == (MNIST_STD,)
    # Prepared as array_record files in the given data_dir, not the home directory.
    files = list(pathlib.Path(data_dir, "bundled_mnist").glob("*/*.array_record-*"))
    assert len(files) == 2
