"""A suite's summary (pdiff_jax.suites.aggregate): its table matches each run's
results.json and shows the runs not finished, with a plot per swept factor."""

import json
import time
from pathlib import Path

import numpy as np

from pdiff_jax.evaluation import report
from pdiff_jax.suites import aggregate
from pdiff_jax.suites import runner as suite_runner


def _write_run(workdir: Path, rng, *, K: int, timings=None, rss=()) -> dict:
    """A finished run: config.json, then results.json from build_results on random groups."""
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text("{}")
    n, N, D = 5, 40, 12

    def group(m):
        return {"train_acc": rng.uniform(0.5, 0.9, m), "test_acc": rng.uniform(0.5, 0.9, m),
                "wrong": rng.random((m, N)) < 0.3, "vectors": rng.normal(size=(m, D))}

    results = report.build_results(
        group(K), group(n), ensemble=0.77,
        baselines={"noise_0.01": group(n), "average_16": group(n), "gaussian": group(n)},
        meta={"K": K, "D": D, "timings_s": timings or {"autoencoder": 999.0}},
        acc_unit="fraction")
    time.sleep(0.01)  # results.json strictly newer than config.json
    report.write_results_json(results, workdir)
    if rss:
        (workdir / suite_runner.STATUS_FILE).write_text(json.dumps(
            {"state": "finished", "attempts": [{"max_rss_mb": r, "wall_s": 10.0} for r in rss]}))
    return json.loads((workdir / "results.json").read_text())


def test_aggregate_matches_the_runs_results_and_shows_unfinished_runs(tmp_path, markdown_table):
    rng = np.random.default_rng(0)
    suite_dir = tmp_path / "suite"
    runs = {"default": {}, "k4": {"zoo.num_models": 4}, "k8": {"zoo.num_models": 8},
            "norm_group": {"m.norm": "group"}, "k2": {"zoo.num_models": 2},
            "broken": {"zoo.selector": "^params/(a|b)$"}}
    res = {"default": _write_run(suite_dir / "default", rng, K=16,
                                 timings={"autoencoder": 12.0, "diffusion": 5.0},
                                 rss=(1000.0, 1200.0)),
           "k4": _write_run(suite_dir / "k4", rng, K=4),
           "k8": _write_run(suite_dir / "k8", rng, K=8),
           "norm_group": _write_run(suite_dir / "norm_group", rng, K=16)}
    (suite_dir / "broken").mkdir()
    (suite_dir / "broken" / suite_runner.STATUS_FILE).write_text(json.dumps(
        {"state": "failed", "error": "SubsetError: no match", "attempts": []}))
    values = {n: {"zoo.num_models": 16} | o for n, o in runs.items()}

    summary = aggregate.aggregate_suite(suite_dir, runs, title="t", values=values)

    table = markdown_table((suite_dir / "suite.md").read_text())
    assert list(table) == list(runs)
    for name, r in res.items():
        row = table[name]
        assert row["state"] == "finished"
        assert row["original"] == f"{r['original']['best']:.2f}"
        assert row["ensemble"] == f"{r['ensemble']['acc']:.2f}" == "77.00"
        for col, key in (("p-diff best", "best"), ("p-diff avg.", "avg"),
                         ("p-diff med.", "median")):
            assert row[col] == f"{r['pdiff'][key]:.2f}"
        for b in ("noise_0.01", "average_16", "gaussian"):
            assert row[f"{b} best"] == f"{r['baselines'][b]['best']:.2f}"
        assert row["NN max IoU (zoo)"] == (f"{r['pdiff']['novelty']['max_iou_gen_mean']:.3f} "
                                           f"({r['novelty']['max_iou_orig_mean']:.3f})")
        assert row["K"] == str(r["meta"]["K"])
    # Timings: each stage's own time, from results.json (the report reads them from the
    # artifacts, so a resumed run shows every stage).
    assert table["default"]["AE s"] == "12" and table["default"]["diffusion s"] == "5"
    assert table["default"]["peak RSS MB"] == "1200" and table["k4"]["peak RSS MB"] == "-"
    assert table["k4"]["AE s"] == "999"
    assert table["k2"]["state"] == "pending" and table["k2"]["original"] == "-"
    assert table["broken"]["state"] == "failed"
    assert table["broken"]["changes"] == "selector=^params/(a|b)$"
    md = (suite_dir / "suite.md").read_text()
    assert "`broken` (failed): SubsetError: no match" in md

    stored = json.loads((suite_dir / "suite.json").read_text())
    by_run = {r["run"]: r for r in stored["runs"]}
    np.testing.assert_allclose(by_run["k8"]["pdiff_best"], res["k8"]["pdiff"]["best"])
    np.testing.assert_allclose(by_run["k8"]["baselines"]["gaussian"]["nn_max_iou"],
                               res["k8"]["baselines"]["gaussian"]["novelty"]["max_iou_gen_mean"])
    # A plot per factor with two finished runs: K (default, k4, k8) and norm; not the selector.
    assert set(summary["plots"]) == {"num_models", "norm"}
    for name in summary["plots"].values():
        assert (suite_dir / name).stat().st_size > 10_000
