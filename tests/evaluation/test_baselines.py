import jax
import numpy as np
import pytest

from pdiff_jax.evaluation import baselines


def make_zoo(k=64, seed=0):
    # Two tensors of very different scales: 6 numbers near 1 (a BN scale) and
    # 10 numbers near 0.01 (a bias).
    rng = np.random.default_rng(seed)
    a = 1.0 + 0.1 * rng.standard_normal((k, 6))
    b = 0.01 + 0.002 * rng.standard_normal((k, 10))
    return np.concatenate([a, b], axis=1).astype(np.float32), [6, 10]


def test_shapes_dtypes_and_names():
    zoo, seg = make_zoo()
    out = baselines.make_baselines(jax.random.key(0), zoo, seg, n=7)
    assert list(out) == ["noise_0.01", "noise_0.05", "noise_0.1", "average_16", "gaussian"]
    assert list(out) == baselines.baseline_names() == list(baselines.BASELINES)
    for v in out.values():
        assert v.shape == (7, 16) and v.dtype == np.float32
        assert np.all(np.isfinite(np.asarray(v)))
    e = baselines.ensemble(zoo)
    assert e.shape == (1, 16)
    np.testing.assert_allclose(np.asarray(e)[0], zoo.astype(np.float64).mean(0), rtol=1e-6)


def test_deterministic_given_key_and_name_keys_independent():
    zoo, seg = make_zoo()
    a = baselines.make_baselines(jax.random.key(3), zoo, seg, n=5)
    b = baselines.make_baselines(jax.random.key(3), zoo, seg, n=5)
    c = baselines.make_baselines(jax.random.key(4), zoo, seg, n=5)
    only_gauss = baselines.make_baselines(jax.random.key(3), zoo, seg, n=5,
                                          noise_amplitudes=(), k_average=None)
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
        assert not np.allclose(np.asarray(a[name]), np.asarray(c[name]))
    np.testing.assert_array_equal(np.asarray(a["gaussian"]), np.asarray(only_gauss["gaussian"]))


def test_noise_is_scaled_per_segment():
    zoo, seg = make_zoo()
    scales = baselines.tensor_scales(zoo, seg)
    np.testing.assert_allclose(scales[0], np.sqrt(np.mean(zoo[:, :6].astype(float) ** 2)),
                               rtol=1e-5)
    np.testing.assert_allclose(scales[1], np.sqrt(np.mean(zoo[:, 6:].astype(float) ** 2)),
                               rtol=1e-5)
    amp = 0.05
    out = np.asarray(baselines.noisy_zoo(jax.random.key(1), zoo, amp, n=4000, segments=seg))
    # Same key, zero amplitude: the same members without noise.
    src = np.asarray(baselines.noisy_zoo(jax.random.key(1), zoo, 0.0, n=4000, segments=seg))
    noise = out - src
    assert np.std(noise[:, :6]) == pytest.approx(amp * scales[0], rel=0.05)
    assert np.std(noise[:, 6:]) == pytest.approx(amp * scales[1], rel=0.05)
    # Without segments one global scale: the bias gets far larger noise than its own size.
    glob = np.asarray(baselines.noisy_zoo(jax.random.key(1), zoo, amp, n=500))
    src = np.asarray(baselines.noisy_zoo(jax.random.key(1), zoo, 0.0, n=500))
    assert np.std((glob - src)[:, 6:]) > 5 * amp * scales[1]


def test_noisy_zoo_members_come_from_zoo():
    zoo, seg = make_zoo(k=8)
    out = np.asarray(baselines.noisy_zoo(jax.random.key(2), zoo, 0.0, n=20, segments=seg))
    assert all(np.any(np.all(row == zoo, axis=1)) for row in out)


def test_segments_must_cover_vector():
    zoo, _ = make_zoo()
    with pytest.raises(ValueError):
        baselines.noisy_zoo(jax.random.key(0), zoo, 0.1, 3, [6, 9])


def test_average_of_16_uses_distinct_members_and_shrinks_spread():
    k, dim = 40, 5
    zoo = np.zeros((k, dim), np.float32)
    zoo[:, 0] = 2.0 ** np.arange(k)  # binary code: 16 x the average has one bit per member
    zoo[:, 1:] = np.random.default_rng(0).standard_normal((k, dim - 1))
    avg = np.asarray(baselines.average_of_random(jax.random.key(0), zoo, k=16, n=200))
    # With 20 members the sum of 16 distinct powers of two is exact in float32.
    low = np.asarray(baselines.average_of_random(jax.random.key(0), zoo[:20], k=16, n=200))
    bits = np.rint(low[:, 0].astype(np.float64) * 16).astype(np.int64)
    assert all(bin(c).count("1") == 16 for c in bits)  # 16 distinct members
    spread_zoo = zoo[:, 1:].std(0).mean()
    spread_avg = avg[:, 1:].std(0).mean()
    # Averages of 16 of 40 without replacement: std shrinks by sqrt((1/16)(24/39)) ~ 0.2.
    assert spread_avg < 0.35 * spread_zoo
    assert spread_avg > 0.1 * spread_zoo
    with pytest.raises(ValueError):
        baselines.average_of_random(jax.random.key(0), zoo, k=41)


def test_gaussian_matches_zoo_moments():
    zoo, _ = make_zoo(k=200)
    g = np.asarray(baselines.gaussian_fit(jax.random.key(5), zoo, n=4000), dtype=np.float64)
    np.testing.assert_allclose(g.mean(0), zoo.mean(0), atol=4 * zoo.std(0).max() / np.sqrt(4000))
    np.testing.assert_allclose(g.std(0), zoo.std(0), rtol=0.06)
    # Coordinates are independent: the zoo's cross-coordinate structure is not copied.
    assert abs(np.corrcoef(g[:, 0], g[:, 1])[0, 1]) < 0.06


def test_float64_statistics_in_column_blocks_equal_those_of_one_whole_copy(monkeypatch):
    # Blocks of 7 columns over D = 50 (the last block short): each column's reduction sees
    # the same members in the same order, so the results are the same to the bit.
    monkeypatch.setattr(baselines, "COLUMN_BLOCK", 7)
    z = (np.random.default_rng(3).standard_normal((9, 50)) * [10 ** (i % 5) for i in range(50)]
         ).astype(np.float32)
    whole = z.astype(np.float64)
    np.testing.assert_array_equal(baselines.column_stats(z, lambda c: c.std(axis=0)),
                                  whole.std(axis=0))
    np.testing.assert_array_equal(np.asarray(baselines.ensemble(z)),
                                  whole.mean(0, keepdims=True).astype(np.float32))
    ids = np.repeat([0, 1], [20, 30])   # two tensors; the unblocked formula as it was
    np.testing.assert_array_equal(
        baselines.tensor_scales(z, [20, 30]),
        np.sqrt(np.bincount(ids, weights=np.mean(whole * whole, axis=0)) / [20, 30]
                ).astype(np.float32))
