"""The results and the report (pdiff_jax.evaluation.report): results.json's schema, the
markdown report with and without its optional sections, and the one-screen summary."""

import json

import numpy as np
import pytest

from pdiff_jax.evaluation import plots, report


def test_build_results_schema_and_percent(fake_results):
    res, (orig, gen, _) = fake_results()
    for key in ["best", "median", "avg", "n"]:
        assert key in res["original"]
    assert res["original"]["best"] == pytest.approx(100 * orig.test_acc.max())
    assert res["ensemble"]["acc"] == pytest.approx(76.6)
    for key in ["best", "best_train", "best_index", "avg", "median", "n", "novelty"]:
        assert key in res["pdiff"]
    i = int(np.argmax(gen.train_acc))
    assert res["pdiff"]["best_index"] == i
    assert res["pdiff"]["best"] == pytest.approx(100 * gen.test_acc[i])
    assert res["pdiff"]["n"] == len(gen.test_acc)
    assert set(res["baselines"]) == {"noise_0.01", "noise_0.05", "noise_0.1", "average_16",
                                     "gaussian"}
    for b in res["baselines"].values():
        assert {"best", "avg", "median", "n", "novelty"} <= set(b)
        assert {"max_iou_gen_mean", "iou_orig_gen", "nn_l2_gen_mean"} <= set(b["novelty"])
    assert {"iou_orig_orig", "iou_gen_gen", "iou_orig_gen", "max_iou_gen_mean",
            "nn_l2_gen_mean", "nn_l2_orig_mean"} <= set(res["novelty"])
    assert len(res["per_model"]["pdiff"]["max_iou"]) == len(gen.test_acc)
    assert len(res["per_model"]["original"]["max_iou"]) == len(orig.test_acc)


def test_results_json_round_trip(tmp_path, fake_results):
    res, _ = fake_results()
    path = report.write_results_json(res, tmp_path)
    assert path == tmp_path / "results.json"
    loaded = json.loads(path.read_text())
    assert loaded["original"]["best"] == pytest.approx(res["original"]["best"])
    assert loaded["pdiff"]["median"] == pytest.approx(res["pdiff"]["median"])
    assert loaded["ensemble"]["acc"] == pytest.approx(76.6)
    assert loaded["meta"]["timings_s"]["ae"] == 1.5
    assert isinstance(loaded["per_model"]["pdiff"]["test_acc"], list)


def test_json_is_strict_with_nan():
    text = json.dumps(report.to_jsonable({"a": float("nan"), "b": np.float32(1.5),
                                          "c": np.arange(2), "d": np.bool_(True)}))
    assert json.loads(text) == {"a": None, "b": 1.5, "c": [0, 1], "d": True}


def test_write_report_with_pictures(tmp_path, fake_results):
    res, _ = fake_results()
    pics = plots.plot_all(res, tmp_path / "figures")
    assert set(pics) == {"accuracy", "novelty"}
    path = report.write_report(res, tmp_path, pics)
    text = path.read_text()
    assert path == tmp_path / "report.md"
    assert "| original | ensemble | p-diff best |" in text.replace("dataset | architecture | ", "")
    assert f"{res['original']['best']:.2f}" in text and f"{res['pdiff']['median']:.2f}" in text
    for name in res["baselines"]:
        assert f"| {name} |" in text
    assert "(figures/accuracy.png)" in text and "(figures/novelty.png)" in text
    assert "TRAINING" in text and "## Timings" in text
    summary = report.summary_text(res)
    assert "p-diff best" in summary and "average_16" in summary
    assert len(summary.splitlines()) < 25


def test_report_without_optional_sections(tmp_path, fake_groups):
    orig, gen, _ = fake_groups(with_novelty=False)
    res = report.build_results(orig, gen, acc_unit="fraction")
    assert "novelty" not in res and "baselines" not in res and "ensemble" not in res
    text = report.write_report(res, tmp_path, {}).read_text()
    assert "## Novelty" not in text and "## Figures" not in text
    report.write_results_json(res, tmp_path)
    assert "p-diff best" in report.summary_text(res)
    # A scalar ensemble accuracy is accepted too.
    res2 = report.build_results(orig, gen, ensemble=0.5, acc_unit="fraction")
    assert res2["ensemble"]["acc"] == pytest.approx(50.0)


def test_generated_group_needs_train_accuracy(fake_groups):
    orig, gen, _ = fake_groups(with_novelty=False)
    with pytest.raises(ValueError):
        report.build_results(orig, gen._replace(train_acc=None))


def test_report_shows_the_autoencoder_diagnostics(tmp_path):
    ae = report.autoencoder_summary({
        "recon_test_acc_best": 95.5, "recon_test_acc_median": 94.25, "recon_test_acc_min": 90.0,
        "latent_dims": 16, "latent_dims_varying": 12, "latent_dims_above_noise": 9,
        "latent_std_max": 0.9, "latent_std_median": 0.3, "latent_std_min": 0.001,
        "input_dim": 199, "model": {"kind": "fc"}})
    assert "model" not in ae
    results = {"original": {"best": 96.0, "median": 95.0, "avg": 95.0, "n": 200},
               "pdiff": {"best": 95.0, "avg": 94.0, "median": 94.5, "n": 100},
               "autoencoder": ae}
    text = report.write_report(results, tmp_path).read_text()
    assert "## Autoencoder" in text
    assert "95.50 / 94.25 / 90.00" in text and "12 / 9 / 16" in text
    assert "zoo through the AE: best 95.50, median 94.25, min 90.00" in report.summary_text(
        results)


def test_a_collapsed_autoencoder_is_shown_in_the_report_and_the_summary(tmp_path):
    ae = report.autoencoder_summary({"recon_test_acc_best": 30.0, "recon_test_acc_median": 29.9,
                                     "recon_test_acc_min": 29.9, "warning": "it lost them"})
    results = {"original": {"best": 98.0, "median": 97.4, "avg": 97.3, "n": 200},
               "pdiff": {"best": 30.0, "avg": 29.9, "median": 29.9, "n": 100},
               "autoencoder": ae}
    assert "**Warning.** it lost them" in report.write_report(results, tmp_path).read_text()
    assert "WARNING: it lost them" in report.summary_text(results)
