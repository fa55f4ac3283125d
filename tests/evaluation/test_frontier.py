"""Tests for pdiff_jax.evaluation.frontier: the trivial families, novelty, margins."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pdiff_jax.evaluation import frontier
from pdiff_jax.evaluation.report import Group


@pytest.fixture(scope="module")
def zoo():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 40)).astype(np.float32)


def test_interpolation_is_a_blend_of_two_distinct_members(zoo):
    a = 0.3
    out = frontier.interpolation(jax.random.key(0), zoo, a, 50)
    # Each row is (1 - a) x_i + a x_j for exactly one pair i != j.
    for row in out:
        pairs = [(i, j) for i in range(len(zoo)) for j in range(len(zoo)) if i != j
                 and np.allclose(row, (1 - a) * zoo[i] + a * zoo[j], atol=1e-5)]
        assert len(pairs) == 1
    copies = frontier.interpolation(jax.random.key(0), zoo, 0.0, 20)
    assert all(np.any(np.all(np.isclose(c, zoo, atol=1e-6), axis=1)) for c in copies)


def test_dirichlet_mix_weights_k_members_summing_to_one():
    eye = np.eye(10, dtype=np.float32)            # member i is the i-th unit vector
    out = frontier.dirichlet_mix(jax.random.key(1), eye, 3, 200)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    assert ((out > 0).sum(1) == 3).all() and (out >= 0).all()


def test_principal_basis_spans_the_centred_zoo_with_its_spread(zoo):
    mean, std, coefficients = frontier.principal_basis(zoo)
    centred = zoo - mean
    directions = coefficients @ centred
    assert directions.shape == (len(zoo) - 1, zoo.shape[1])   # rank K - 1 after centring
    np.testing.assert_allclose(directions @ directions.T, np.eye(len(directions)), atol=1e-5)
    np.testing.assert_allclose(centred @ directions.T @ directions, centred, atol=1e-4)
    # Population variance along each direction equals std**2.
    np.testing.assert_allclose((centred @ directions.T).var(0), std ** 2, rtol=1e-5)


def test_pca_gaussian_has_the_zoos_covariance_at_scale_one(zoo):
    mean, std, coefficients = basis = frontier.principal_basis(zoo)
    directions = coefficients @ (zoo - mean)
    samples = frontier.pca_gaussian(jax.random.key(2), zoo, 1.0, 20000, basis).astype(np.float64)
    coords = (samples - mean) @ directions.T
    np.testing.assert_allclose(coords.std(0), std, rtol=0.05)
    near_mean = frontier.pca_gaussian(jax.random.key(2), zoo, 1e-6, 5, basis)
    np.testing.assert_allclose(near_mean, np.broadcast_to(mean, near_mean.shape), atol=1e-4)


def test_draw_names_every_training_free_family_and_refuses_others(zoo):
    for family, knob in (("noise", 0.1), ("interpolation", 0.5), ("dirichlet", 3),
                         ("pca_gaussian", 0.5)):
        out = frontier.draw(family, knob, jax.random.key(3), zoo, n=7)
        assert out.shape == (7, zoo.shape[1]) and out.dtype == np.float32
        np.testing.assert_array_equal(out, frontier.draw(family, knob, jax.random.key(3), zoo,
                                                         n=7))
    with pytest.raises(ValueError, match="no training-free family 'finetune'"):
        frontier.draw("finetune", 10, jax.random.key(3), zoo, n=7)


def _masks(rows):
    return np.asarray(rows, dtype=bool)


def test_novelty_counts_copies_of_members_and_collapse_alike():
    wrong_zoo = _masks([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]])
    vec_zoo = np.zeros((2, 3), np.float32)
    copies = frontier.novelty_of_group(wrong_zoo, wrong_zoo, vec_zoo, vec_zoo)
    assert copies["nn_iou_any"] == 1.0 and copies["nn_max_iou"] == 1.0
    # Samples unlike every member but identical to each other: collapsed, not novel.
    collapsed = _masks([[0, 0, 0, 0, 1, 1]] * 3)
    novel = frontier.novelty_of_group(wrong_zoo, collapsed, vec_zoo, np.ones((3, 3)))
    assert novel["nn_max_iou"] == 0.0 and novel["nn_iou_within"] == 1.0
    assert novel["nn_iou_any"] == 1.0
    np.testing.assert_allclose(novel["nn_l2"], np.sqrt(3))
    spread = _masks([[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]])
    assert frontier.novelty_of_group(wrong_zoo, spread, vec_zoo, vec_zoo)["nn_iou_any"] == 0.0


def test_median_at_follows_the_curve_in_knob_order_and_takes_its_best_crossing():
    pts = [{"nn_iou_any": 0.9, "median": 90.0}, {"nn_iou_any": 0.7, "median": 86.0},
           {"nn_iou_any": 0.5, "median": 70.0}]
    assert frontier.median_at(pts, 0.8) == pytest.approx(88.0)
    assert frontier.median_at(pts, 0.6) == pytest.approx(78.0)
    assert frontier.median_at(pts, 0.5) == pytest.approx(70.0)
    assert frontier.median_at(pts, 0.95) is None and frontier.median_at(pts, 0.4) is None
    # A wide Gaussian turns back (less novel again, and far worse): not the family's best.
    turned = [*pts, {"nn_iou_any": 0.8, "median": 40.0}]
    assert frontier.median_at(turned, 0.6) == pytest.approx(78.0)
    assert frontier.median_at(turned, 0.75) == pytest.approx(87.0)


def test_margin_takes_the_best_pdiff_point_inside_the_familys_range():
    family = [{"nn_iou_any": 0.9, "median": 90.0}, {"nn_iou_any": 0.5, "median": 70.0}]
    pdiff = [{"knob": 1.0, "nn_iou_any": 0.7, "median": 81.0},    # family: 80 -> +1
             {"knob": 0.5, "nn_iou_any": 0.8, "median": 87.0},    # family: 85 -> +2
             {"knob": 2.0, "nn_iou_any": 0.3, "median": 99.0}]    # outside: ignored
    m = frontier.margin(pdiff, family)
    assert m["value"] == pytest.approx(2.0) and m["pdiff_knob"] == 0.5
    outside = frontier.margin(pdiff[2:], family)
    assert outside["value"] is None and "outside the family's [0.500, 0.900]" in outside["reason"]


def _draws(rng, knobs, accuracy, novelty, n):
    """Bootstrap inputs: per knob, n accuracies around ``accuracy - 2 i`` and novelties
    around ``novelty - 0.1 i`` (a curve that loses accuracy as it gains novelty)."""
    return [(k, accuracy - 2 * i + rng.normal(0, 1, n), novelty - 0.1 * i + rng.normal(0, .05, n))
            for i, k in enumerate(knobs)]


def test_margin_intervals_cover_the_margin_and_narrow_with_more_draws():
    rng = np.random.default_rng(0)
    intervals = {}
    for n in (25, 400):
        family = _draws(rng, range(5), 90.0, 0.9, n)
        pdiff = _draws(rng, (1.0,), 87.5, 0.7, n)       # the family: 86 at 0.7
        lo, hi = frontier.margin_intervals(jax.random.key(0), pdiff, {"noise": family},
                                           resamples=300)["noise"]
        assert lo < 1.5 < hi
        intervals[n] = hi - lo
    assert intervals[400] < intervals[25] / 2             # ~1/sqrt(n)
    # p-diff compared with its own draws: no lead either way
    same = _draws(rng, range(5), 90.0, 0.9, 100)
    lo, hi = frontier.margin_intervals(jax.random.key(1), same, {"noise": same},
                                       resamples=300)["noise"]
    assert lo < 0 < hi


def test_margin_intervals_are_none_where_pdiff_leaves_the_familys_range():
    rng = np.random.default_rng(1)
    family = _draws(rng, range(3), 90.0, 0.9, 50)          # novelty 0.7 ... 0.9
    pdiff = _draws(rng, (1.0,), 85.0, 0.3, 50)
    assert frontier.margin_intervals(jax.random.key(0), pdiff, {"noise": family},
                                     resamples=50) == {"noise": None}


def test_compute_frontier_gives_every_point_the_same_n_and_evaluator(zoo):
    """With a stand-in evaluator (accuracy = minus the distance to the zoo mean, wrong
    masks from the sign of a fixed projection), every family, p-diff and the margins
    come out, each point with n draws, and the same key gives the same frontier."""
    proj = np.random.default_rng(1).normal(size=(zoo.shape[1], 64))
    center = zoo.mean(0)
    calls = []

    def measure(vectors):
        calls.append(len(vectors))
        acc = 100.0 - np.linalg.norm(vectors - center, axis=1)
        return Group(acc, acc, (vectors - center) @ proj > 1.0, np.asarray(vectors))

    class Zoo:
        vectors, segments = zoo, None

    settings = frontier.FrontierSettings(noise=(0.01, 0.3), interpolation=(0.1, 0.5),
                                         dirichlet=(3,), pca_gaussian=(0.2, 1.0),
                                         finetune=(5, 10), finetune_members=0,   # n
                                         pdiff=(0.5, 1.0))

    def finetune(members, steps, key):
        return {m: zoo[members] + 0.01 * m for m in steps}

    def run():
        calls.clear()
        return frontier.compute_frontier(
            settings, key=jax.random.key(4), zoo=Zoo, zoo_measured=measure(zoo),
            measure=measure, finetune=finetune, n=9,
            sample_pdiff=lambda t, k: frontier.pca_gaussian(k, zoo, 0.5 * t, 9))

    out = run()
    assert set(out["families"]) == {"noise", "interpolation", "dirichlet", "pca_gaussian",
                                    "finetune"}
    assert [p["knob"] for p in out["pdiff"]] == [0.5, 1.0]
    assert calls[1:] == [9] * (len(calls) - 1)            # every point: n draws
    assert set(out["margin"]) == set(out["families"]) == set(out["margin_interval"])
    for family, value in out["margin"].items():
        interval = out["margin_interval"][family]
        assert value is None or interval is None or interval[0] <= interval[1]
    for points in [*out["families"].values(), out["pdiff"]]:
        for p in points:
            assert p["n"] == 9 and {"median", "best", "nn_iou_any", "nn_max_iou",
                                    "nn_iou_within", "nn_l2"} <= set(p)
    assert run() == out


def test_settings_from_the_config_section_and_the_config_check():
    from pdiff_jax.config.check import ConfigError, validate_config
    from pdiff_jax.config.defaults import get_config

    config = get_config("smoke")
    settings = frontier.FrontierSettings.from_section(config.evaluate.frontier)
    assert settings.knobs("noise") == (0.03, 0.3) and settings.knobs("finetune") == ()
    bad = get_config("smoke")
    bad.evaluate.frontier.interpolation = (0.5, 1.5)
    with pytest.raises(ConfigError, match=r"evaluate.frontier.interpolation must be a tuple "
                                          r"of numbers in \(0, 1\]"):
        validate_config(bad)
    unequal = get_config("smoke")
    unequal.evaluate.num_baseline = 20
    with pytest.raises(ConfigError, match=r"num_baseline must be equal to "
                                          "evaluate.num_generated = 8"):
        validate_config(unequal)


def test_a_diverged_fine_tuning_leaves_its_family_out_and_says_why(zoo):
    def measure(vectors):
        acc = np.full(len(vectors), 90.0)
        return Group(acc, acc, np.zeros((len(vectors), 8), bool), np.asarray(vectors))

    class Zoo:
        vectors, segments = zoo, None

    def finetune(members, steps, key):
        raise FloatingPointError("member 3: loss became nan at snapshot 4")

    settings = frontier.FrontierSettings(noise=(0.1,), interpolation=(), dirichlet=(),
                                         pca_gaussian=(), finetune=(5,), pdiff=(1.0,))
    out = frontier.compute_frontier(settings, key=jax.random.key(0), zoo=Zoo,
                                    zoo_measured=measure(zoo), measure=measure,
                                    finetune=finetune, n=4,
                                    sample_pdiff=lambda t, k: zoo[:4])
    assert set(out["families"]) == {"noise"}
    assert out["failed"] == {"finetune": "fine-tuning diverged: member 3: loss became nan "
                                         "at snapshot 4"}


def test_the_frontier_plot_focuses_where_pdiff_competes(tmp_path):
    from pdiff_jax.evaluation import frontier_report

    def pt(knob, median, novelty):
        return {"knob": knob, "n": 100, "median": median, "nn_iou_any": novelty}

    fr = {"families": {"noise": [pt(0.01, 96.1, 0.97), pt(0.1, 95.7, 0.73)],
                       "pca_gaussian": [pt(0.2, 87.8, 0.70), pt(2.0, 23.0, 0.72)]},
          "pdiff": [pt(1.0, 95.7, 0.71), pt(1.5, 95.3, 0.61)], "pdiff_knob": "latent_mix",
          "zoo": {"median": 96.1, "nn_iou_any": 0.52}}
    # A Gaussian that breaks the networks (23 %) would squash the comparison: cut it off.
    assert frontier_report.focus_range(fr) == pytest.approx((92.3, 96.6))
    fr["families"].pop("pca_gaussian")
    assert frontier_report.focus_range(fr) is None   # everything fits: the full range
    assert frontier_report.plot_frontier(tmp_path / "f.png", fr).stat().st_size > 0


def test_the_report_gives_each_margin_its_interval():
    from pdiff_jax.evaluation import frontier_report
    point = {"knob": 1.0, "n": 9, "median": 90.0, "best": 91.0, "nn_iou_any": 0.5}
    result = {"families": {"noise": [point]}, "pdiff": [point], "pdiff_knob": "temperature",
              "margin": {"noise": 0.25, "interpolation": None},
              "margin_interval": {"noise": [-0.1, 0.6], "interpolation": None},
              "margin_notes": {"noise": {"pdiff_knob": 1.0},
                               "interpolation": {"reason": "outside"}}}
    lines = frontier_report.markdown(result, None)
    assert "| noise | +0.25 | [-0.10, +0.60] | 1.000 |  |" in lines
    assert "| interpolation | - | - | - | outside |" in lines
    assert "noise +0.25 [-0.10, +0.60]; interpolation -" in frontier_report.summary_text(result)
