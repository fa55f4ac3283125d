"""Loading a data set (pdiff_jax.data.loader): the bundled MNIST standing in for the
official one, class-balanced seeded subsets, a user's .npz, and the errors that name
what is wrong; importing pdiff_jax.data stays cheap."""

import numpy as np
import pytest

from pdiff_jax.data import DataFormatError, DataMissingError, load_dataset

SMALL = dict(val_examples=500, max_train=2000, max_test=500, seed=0)


@pytest.fixture(scope="session")
def mnist_small(data_dir, mnist_full):
    del mnist_full  # built and cached first
    return load_dataset("mnist", data_dir=data_dir, image_size=32, channels=3, **SMALL)


def _ids_npz(path, n_train=1000, n_test=200, shape=(8, 8), num_classes=10, dtype=np.uint8):
    """An .npz whose images encode their own index (pixel 0: i % 256, pixel 1: i // 256)."""
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.zeros((n, *shape), dtype)
        ids = np.arange(n)
        x[:, 0, 0], x[:, 0, 1] = ids % 256, ids // 256
        x[:, 1:, :] = np.random.default_rng(n).integers(0, 256, size=(n, shape[0] - 1, shape[1]))
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = ids % num_classes
    np.savez(path, **arrays)
    return arrays


def _decode_ids(ds_x, mean, std):
    """Inverse of `_ids_npz` on normalized 1-channel images."""
    raw = np.rint((ds_x[..., 0] * std[0] + mean[0]) * 255).astype(np.int64)
    return raw[:, 0, 0] + 256 * raw[:, 0, 1]


def test_mnist_falls_back_to_bundled_padded_to_3x32x32(mnist_small, data_dir):
    ds = mnist_small
    assert ds.source == "bundled"
    assert ds.x_train.shape == (2000, 32, 32, 3) and ds.x_val.shape == (500, 32, 32, 3)
    assert ds.x_test.shape == (500, 32, 32, 3)
    # Three equal channels; a 2-pixel border of black (padding, not resizing).
    np.testing.assert_array_equal(ds.x_train[..., 0], ds.x_train[..., 2])
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    black = (0.0 - ds.mean[0]) / ds.std[0]   # a black pixel, normalized
    np.testing.assert_allclose(ds.x_train[:, border], black, rtol=1e-6)
    # The interior is exactly the native image of the same (seeded) example.
    native = load_dataset("bundled_mnist", data_dir=data_dir, **SMALL)
    np.testing.assert_array_equal(ds.x_train[:, 2:30, 2:30, 0], native.x_train[..., 0])
    np.testing.assert_array_equal(ds.y_train, native.y_train)


def test_subsets_are_class_balanced(mnist_small):
    assert np.bincount(mnist_small.y_train, minlength=10).tolist() == [200] * 10
    assert np.bincount(mnist_small.y_val, minlength=10).tolist() == [50] * 10
    assert np.bincount(mnist_small.y_test, minlength=10).tolist() == [50] * 10


def test_loading_is_deterministic_per_seed(mnist_small, data_dir):
    again = load_dataset("mnist", data_dir=data_dir, image_size=32, channels=3, **SMALL)
    assert again.fingerprint == mnist_small.fingerprint
    np.testing.assert_array_equal(again.x_train, mnist_small.x_train)
    np.testing.assert_array_equal(again.x_val, mnist_small.x_val)
    alias = load_dataset("bundled_mnist", data_dir=data_dir, image_size=32, channels=3, **SMALL)
    assert alias.fingerprint == mnist_small.fingerprint  # same data, same preprocessing
    other = load_dataset(
        "mnist", data_dir=data_dir, image_size=32, channels=3, **{**SMALL, "seed": 1}
    )
    assert other.fingerprint != mnist_small.fingerprint
    assert not np.array_equal(other.y_train, mnist_small.y_train)


# --- unknown names and import cost ------------------------------------------------


def test_unknown_name_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        load_dataset("nope", data_dir=str(tmp_path))


def test_import_is_cheap(run_python):
    code = (
        "import sys, pdiff_jax.data; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tensorflow_datasets')))"
    )
    assert run_python(code).strip() == "[]"


# --- user .npz --------------------------------------------------------------------


def test_npz_dataset_with_val_split(tmp_path):
    path = tmp_path / "ids.npz"
    _ids_npz(path)
    ds = load_dataset(str(path), val_examples=100, max_test=50, seed=5)
    assert ds.source == "npz" and ds.num_classes == 10 and ds.name == str(path)
    assert ds.x_train.shape == (900, 8, 8, 1) and ds.x_val.shape == (100, 8, 8, 1)
    train_ids = _decode_ids(ds.x_train, ds.mean, ds.std)
    val_ids = _decode_ids(ds.x_val, ds.mean, ds.std)
    assert not set(train_ids) & set(val_ids)  # disjoint
    assert sorted([*train_ids, *val_ids]) == list(range(1000))  # and together complete
    np.testing.assert_array_equal(ds.y_train, train_ids % 10)  # labels stay with images
    assert np.bincount(ds.y_val).tolist() == [10] * 10
    assert np.bincount(ds.y_test).tolist() == [5] * 10
    # Statistics from the training images: normalized to mean 0, std 1.
    assert abs(float(ds.x_train.mean())) < 0.05 and abs(float(ds.x_train.std()) - 1) < 0.05


def test_npz_float_rgb_resize_and_gray(tmp_path):
    rng = np.random.default_rng(0)
    x = np.broadcast_to(rng.random((60, 1, 1, 3), np.float32), (60, 12, 12, 3))
    np.savez(
        tmp_path / "rgb.npz",
        x_train=x,
        y_train=np.arange(60) % 3,
        x_test=x[:9],
        y_test=np.arange(9) % 3,
    )
    ds = load_dataset(tmp_path / "rgb.npz", image_size=24)  # 12 -> 24 resizes
    assert ds.x_train.shape == (60, 24, 24, 3) and ds.num_classes == 3
    # Flat-colour images stay flat under resizing.
    np.testing.assert_allclose(
        ds.x_train, ds.x_train[:, :1, :1, :].repeat(24, 1).repeat(24, 2), atol=1e-5
    )
    gray = load_dataset(tmp_path / "rgb.npz", channels=1)
    luma = x[:, 0, 0] @ np.asarray([0.299, 0.587, 0.114], np.float32)
    restored = gray.x_train[:, 0, 0, 0] * gray.std[0] + gray.mean[0]
    np.testing.assert_allclose(restored, luma, atol=1e-5)


@pytest.mark.parametrize(
    "arrays, match",
    [
        (
            dict(
                x_train=np.zeros((4, 8, 8), np.uint8),
                y_train=np.zeros(4, int),
                x_test=np.zeros((2, 8, 8), np.uint8),
            ),
            r"lacks key\(s\) \['y_test'\]",
        ),
        (
            dict(
                x_train=np.zeros((4, 64), np.uint8),
                y_train=np.zeros(4, int),
                x_test=np.zeros((2, 8, 8), np.uint8),
                y_test=np.zeros(2, int),
            ),
            r"x_train has shape \(4, 64\)",
        ),
        (
            dict(
                x_train=np.zeros((4, 8, 8, 5), np.uint8),
                y_train=np.zeros(4, int),
                x_test=np.zeros((2, 8, 8, 5), np.uint8),
                y_test=np.zeros(2, int),
            ),
            r"x_train has shape \(4, 8, 8, 5\)",
        ),
        (
            dict(
                x_train=np.zeros((4, 8, 8), np.uint8),
                y_train=np.zeros(3, int),
                x_test=np.zeros((2, 8, 8), np.uint8),
                y_test=np.zeros(2, int),
            ),
            r"y_train has shape \(3,\) but x_train has 4 rows",
        ),
        (
            dict(
                x_train=np.zeros((4, 8, 8), np.uint8),
                y_train=np.zeros(4, int),
                x_test=np.zeros((2, 9, 9), np.uint8),
                y_test=np.zeros(2, int),
            ),
            r"x_test images have \(9, 9, 1\)",
        ),
        (
            dict(
                x_train=np.zeros((4, 8, 8), np.uint8),
                y_train=np.zeros(4, np.float32),
                x_test=np.zeros((2, 8, 8), np.uint8),
                y_test=np.zeros(2, int),
            ),
            r"y_train has shape \(4,\) dtype float32",
        ),
    ],
)
def test_bad_npz_errors_name_the_problem(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataFormatError, match=match):  # a ValueError too
        load_dataset(str(tmp_path / "bad.npz"))


def test_missing_npz_is_data_missing(tmp_path):
    with pytest.raises(DataMissingError, match=r"no such \.npz file"):
        load_dataset(str(tmp_path / "absent.npz"))


def test_variable_size_dataset_needs_image_size(tmp_path):
    with pytest.raises(ValueError, match="pass image_size"):
        load_dataset("food101", data_dir=str(tmp_path))
