import json

import numpy as np
import pytest

from pdiff_jax.evaluation import plots, report

N_TEST, K, N_GEN, D = 400, 12, 10, 20


def fake_groups(seed=0, with_novelty=True):
    rng = np.random.default_rng(seed)
    vec = rng.standard_normal((K, D)).astype(np.float32)

    def group(n, base, noise):
        test = np.clip(base + noise * rng.standard_normal(n), 0, 1)
        train = np.clip(test + 0.1 + 0.01 * rng.standard_normal(n), 0, 1)
        wrong = rng.random((n, N_TEST)) < (1 - test)[:, None]
        vectors = vec[rng.integers(0, K, n)] + 0.1 * rng.standard_normal((n, D))
        if not with_novelty:
            wrong = vectors = None
        return report.Group(train, test, wrong, vectors)

    orig = group(K, 0.767, 0.002)
    if with_novelty:
        orig = orig._replace(vectors=vec)
    gen = group(N_GEN, 0.72, 0.03)
    bases = {name: group(N_GEN, 0.75, 0.01)
             for name in ["noise_0.01", "noise_0.05", "noise_0.1", "average_16", "gaussian"]}
    return orig, gen, bases


def build(with_novelty=True, **kw):
    orig, gen, bases = fake_groups(with_novelty=with_novelty)
    ens = {"train_acc": [0.86], "test_acc": [0.766],
           "wrong": orig.wrong[:1] if with_novelty else None}
    meta = {"dataset": "cifar100", "arch": "resnet18", "D": D, "K": K,
            "timings_s": {"ae": 1.5, "diffusion": 2.0}, "config": {"seed": 0, "lr": 1e-3}}
    return report.build_results(orig, gen, ensemble=ens, baselines=bases, meta=meta,
                                acc_unit="fraction", **kw), (orig, gen, bases)


def test_build_results_schema_and_percent():
    res, (orig, gen, _) = build()
    for key in ["best", "median", "avg", "n"]:
        assert key in res["original"]
    assert res["original"]["best"] == pytest.approx(100 * orig.test_acc.max())
    assert res["ensemble"]["acc"] == pytest.approx(76.6)
    for key in ["best", "best_train", "best_index", "avg", "median", "n", "novelty"]:
        assert key in res["pdiff"]
    i = int(np.argmax(gen.train_acc))
    assert res["pdiff"]["best_index"] == i
    assert res["pdiff"]["best"] == pytest.approx(100 * gen.test_acc[i])
    assert res["pdiff"]["n"] == N_GEN
    assert set(res["baselines"]) == {"noise_0.01", "noise_0.05", "noise_0.1", "average_16",
                                     "gaussian"}
    for b in res["baselines"].values():
        assert {"best", "avg", "median", "n", "novelty"} <= set(b)
        assert {"max_iou_gen_mean", "iou_orig_gen", "nn_l2_gen_mean"} <= set(b["novelty"])
    assert {"iou_orig_orig", "iou_gen_gen", "iou_orig_gen", "max_iou_gen_mean",
            "nn_l2_gen_mean", "nn_l2_orig_mean"} <= set(res["novelty"])
    assert len(res["per_model"]["pdiff"]["max_iou"]) == N_GEN
    assert len(res["per_model"]["original"]["max_iou"]) == K


def test_results_json_round_trip(tmp_path):
    res, _ = build()
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


def test_write_report_with_pictures(tmp_path):
    res, _ = build()
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


def test_report_without_optional_sections(tmp_path):
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


def test_generated_group_needs_train_accuracy():
    orig, gen, _ = fake_groups(with_novelty=False)
    with pytest.raises(ValueError):
        report.build_results(orig, gen._replace(train_acc=None))


def assert_nontrivial_png(path):
    import matplotlib.image as mpimg

    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert np.std(img[..., :3]) > 0.02  # not a blank canvas
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 20


def test_plots_render(tmp_path):
    res, (orig, gen, _) = build()
    rng = np.random.default_rng(0)
    lat_o = np.tanh(rng.standard_normal((K, 4, 3)))
    lat_g = np.tanh(rng.standard_normal((N_GEN, 4, 3)))
    steps = np.linspace(1, 0, 15)[None, :, None]
    traj = steps * 5 * rng.standard_normal((4, 1, D)) + (1 - steps) * orig.vectors[:4, None]
    pics = plots.plot_all(res, tmp_path, latents_orig=lat_o, latents_gen=lat_g,
                          trajectories=traj, zoo=orig.vectors, generated=gen.vectors)
    assert set(pics) == {"accuracy", "novelty", "tsne", "trajectories"}
    for p in pics.values():
        assert p.parent == tmp_path
        assert_nontrivial_png(p)


def test_tsne_handles_tiny_groups(tmp_path):
    rng = np.random.default_rng(0)
    p = plots.tsne_latents(tmp_path / "t.png", rng.standard_normal((2, 5)),
                           rng.standard_normal((1, 5)))  # 5 points: perplexity < n
    assert_nontrivial_png(p)
    p = plots.tsne_latents(tmp_path / "t1.png", rng.standard_normal((1, 5)),
                           rng.standard_normal((1, 5)))  # 3 points: PCA fallback
    assert p.exists()
    p = plots.trajectories_2d(tmp_path / "tr.png", rng.standard_normal((2, 6, 5)),
                              rng.standard_normal((1, 5)))  # K = 1
    assert_nontrivial_png(p)
