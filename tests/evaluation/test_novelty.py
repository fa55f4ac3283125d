import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pdiff_jax.evaluation import novelty


def brute_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            union = np.sum(x | y)
            out[i, j] = 1.0 if union == 0 else np.sum(x & y) / union
    return out


masks = st.integers(1, 6).flatmap(
    lambda n: hnp.arrays(bool, st.tuples(st.just(n), st.integers(1, 40))))


@settings(max_examples=60, deadline=None)
@given(masks, st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_iou_matrix_matches_brute_force(a, m, seed):
    rng = np.random.default_rng(seed)
    b = rng.random((m, a.shape[1])) < rng.random()
    np.testing.assert_allclose(novelty.iou_matrix(a, b), brute_iou(a, b), atol=1e-6)


def test_empty_sets_conventions():
    none = np.zeros((1, 5), bool)
    some = np.array([[True, False, False, False, False]])
    assert novelty.iou_matrix(none, none)[0, 0] == 1.0  # both perfect: identical behaviour
    assert novelty.iou_matrix(none, some)[0, 0] == 0.0
    assert novelty.iou_matrix(some, some)[0, 0] == 1.0


def test_iou_matrix_rejects_different_test_sets():
    with pytest.raises(ValueError):
        novelty.iou_matrix(np.zeros((2, 3), bool), np.zeros((2, 4), bool))


def test_sq_distances_precise_for_close_large_vectors():
    rng = np.random.default_rng(0)
    base = 1000.0 + rng.standard_normal(3000)
    x = (base + 1e-3 * rng.standard_normal((4, 3000))).astype(np.float32)
    y = (base + 1e-3 * rng.standard_normal((3, 3000))).astype(np.float32)
    ref = ((x[:, None, :].astype(np.float64) - y[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(novelty.sq_distances(x, y, chunk=700), ref, rtol=1e-6)


def test_novelty_metrics_values():
    rng = np.random.default_rng(1)
    n_test = 500
    orig = rng.random((5, n_test)) < 0.2
    gen = orig[[0, 0, 3]].copy()
    gen[2] = rng.random(n_test) < 0.2  # a fresh model
    vec_o = rng.standard_normal((5, 8)).astype(np.float32)
    vec_g = np.stack([vec_o[0], vec_o[0] + 0.5, vec_o[3] * 0 + 100.0]).astype(np.float32)
    m = novelty.novelty_metrics(orig, gen, vec_o, vec_g)

    oo = brute_iou(orig, orig)
    gg = brute_iou(gen, gen)
    og = brute_iou(orig, gen)
    assert m["iou_orig_orig"] == pytest.approx(oo[~np.eye(5, dtype=bool)].mean(), abs=1e-6)
    assert m["iou_gen_gen"] == pytest.approx(gg[~np.eye(3, dtype=bool)].mean(), abs=1e-6)
    assert m["iou_orig_gen"] == pytest.approx(og.mean(), abs=1e-6)
    np.testing.assert_allclose(m["max_iou_gen"], og.max(0), atol=1e-6)
    assert m["max_iou_gen"][0] == 1.0 and m["max_iou_gen_index"][0] == 0
    assert m["max_iou_gen_mean"] == pytest.approx(og.max(0).mean(), abs=1e-6)
    d = np.sqrt(((vec_g[:, None].astype(float) - vec_o[None]) ** 2).sum(-1))
    np.testing.assert_allclose(m["nn_l2_gen"], d.min(1), rtol=1e-5, atol=1e-5)
    assert m["nn_l2_gen"][0] == pytest.approx(0.0, abs=1e-5)
    assert m["nn_l2_gen"][1] == pytest.approx(0.5 * np.sqrt(8), rel=1e-5)
    do = np.sqrt(((vec_o[:, None].astype(float) - vec_o[None]) ** 2).sum(-1))
    np.fill_diagonal(do, np.inf)
    np.testing.assert_allclose(m["nn_l2_orig"], do.min(1), rtol=1e-5)
    assert m["nn_l2_orig_mean"] == pytest.approx(do.min(1).mean(), rel=1e-5)
    assert set(novelty.scalars(m)) >= {"iou_orig_orig", "iou_gen_gen", "iou_orig_gen",
                                       "max_iou_gen_mean", "nn_l2_gen_mean", "nn_l2_orig_mean"}


def test_single_model_groups_give_nan_not_errors():
    m = novelty.novelty_metrics(np.ones((1, 4), bool), np.ones((1, 4), bool))
    assert np.isnan(m["iou_orig_orig"]) and np.isnan(m["iou_gen_gen"])
    assert m["iou_orig_gen"] == 1.0
    assert "nn_l2_gen_mean" not in m


def test_iou_matrix_at_paper_scale():
    # Its speed is measured in benchmarks/, not asserted here.
    rng = np.random.default_rng(0)
    a = rng.random((300, 10_000)) < 0.25
    out = novelty.iou_matrix(a, a)
    assert out.shape == (300, 300) and np.allclose(np.diag(out), 1.0)
