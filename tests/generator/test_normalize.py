"""The normalizer in front of the autoencoder (pdiff_jax.generator.normalize): per
coordinate, per tensor or none, and the projection onto the zoo's principal coordinates."""

import numpy as np
import pytest

from pdiff_jax.generator.normalize import (
    denormalize,
    fit_normalizer,
    normalize,
    normalizer_from_arrays,
)


@pytest.mark.parametrize("mode", ["coordinate", "tensor", "none"])
def test_normalizer_round_trip(mode):
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(20, 30)).astype(np.float32)
    norm = fit_normalizer(x, [10, 20], mode=mode)
    y = normalize(norm, x)
    np.testing.assert_allclose(denormalize(norm, y), x, rtol=1e-5, atol=1e-5)
    if mode == "coordinate":
        np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(y.std(0), 1, atol=1e-4)
    if mode == "tensor":  # one mean/std per segment
        assert len(set(norm.std[:10])) == 1 and len(set(norm.std[10:])) == 1
        np.testing.assert_allclose(y[:, 10:].std(), 1, atol=1e-4)


def test_normalizer_floors_constant_coordinates():
    x = np.ones((10, 4), np.float32) * np.array([5.0, 0.0, 1.0, 1.0], np.float32)
    x[:, 3] += np.linspace(0, 1, 10)
    norm = fit_normalizer(x, mode="coordinate", std_floor=1e-4)
    assert np.all(norm.std > 0) and np.all(np.isfinite(normalize(norm, x)))
    assert norm.std[0] >= 1e-4 * np.sqrt((x ** 2).mean()) * 0.999  # relative to the tensor
    assert np.abs(normalize(norm, x)[:, :3]).max() < 1e-3


def test_normalizer_rejects_bad_segments_and_modes():
    x = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match="sum to 4, but D = 5"):
        fit_normalizer(x, [2, 2])
    with pytest.raises(ValueError, match="mode"):
        fit_normalizer(x, mode="layer")


def test_projection_round_trip_is_exact_for_the_zoo(independent_zoo):
    x = independent_zoo()
    K = len(x)
    norm = fit_normalizer(x, [32, 48, 16], mode="tensor", components=200)
    assert norm.out_dim == K - 1          # the centred zoo spans K - 1 directions
    y = normalize(norm, x)
    assert y.shape == (K, K - 1)
    np.testing.assert_allclose(np.sqrt(np.mean(y ** 2)), 1.0, rtol=1e-4)   # unit RMS
    np.testing.assert_allclose(norm.basis @ norm.basis.T, np.eye(K - 1), atol=1e-5)
    np.testing.assert_allclose(denormalize(norm, y), x, rtol=1e-4, atol=1e-4)
    # stored and rebuilt, the map is the same
    again = normalizer_from_arrays(norm.arrays())
    np.testing.assert_array_equal(normalize(again, x), y)


def test_fewer_components_give_the_best_low_rank_approximation(independent_zoo):
    x = independent_zoo(1)
    plain = fit_normalizer(x, mode="coordinate")
    norm = fit_normalizer(x, mode="coordinate", components=4)
    xn = normalize(plain, x)
    got = normalize(plain, denormalize(norm, normalize(norm, x)))
    # the SVD's rank-4 approximation of the centred, normalized zoo
    centred = xn - xn.mean(0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    best = (u[:, :4] * s[:4]) @ vt[:4] + xn.mean(0)
    np.testing.assert_allclose(got, best, atol=1e-3)
    assert np.linalg.norm(got - xn) > 0.1 * np.linalg.norm(centred)   # rank 4 loses a lot


def test_without_components_the_normalizer_is_unchanged(independent_zoo):
    x = independent_zoo()
    norm = fit_normalizer(x, mode="tensor", components=0)
    assert norm.basis is None and norm.out_dim == x.shape[1]
    assert set(norm.arrays()) == {"mean", "std"}
