"""Suites: their definitions, the runner (placement, failures, resuming) and the aggregator.

The end-to-end test runs a two-run smoke suite through ``launch/sweep.py`` (real
``pdiff_jax.main`` subprocesses); the others are fast and use synthetic runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pdiff_jax.evaluation import report
from pdiff_jax.suites import aggregate
from pdiff_jax.suites import catalog as suites
from pdiff_jax.suites import placement as suite_placement
from pdiff_jax.suites import runner as suite_runner
from pdiff_jax.suites import shared_zoos as suite_zoos

ROOT = Path(__file__).resolve().parent.parent


def _sweep_module():
    path = ROOT / "launch" / "sweep.py"
    spec = importlib.util.spec_from_file_location("launch_sweep_suites", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_config(tmp_path, data_dir: str = "") -> Path:
    """A config file: the smoke config made smaller, with a 'pair' suite (+ a broken run)."""
    path = tmp_path / "tiny.py"
    path.write_text(textwrap.dedent(f"""
        from pdiff_jax.config.defaults import get_config as _base


        def get_config(arg=None):
            config = _base("smoke")
            config.data.data_dir = {data_dir!r}
            config.data.max_train = 1000
            config.data.max_test = 300
            config.zoo.num_models = 8
            config.evaluate.train_examples = 500
            config.evaluate.num_generated = 4
            config.evaluate.num_baseline = 4
            config.evaluate.tsne = False
            config.evaluate.trajectories = 0
            config.evaluate.finetune_pairs = 0
            config.generator.autoencoder.train.steps = 20
            config.generator.diffusion.train.steps = 20
            return config


        def get_suites(arg=None):
            return {{"pair": {{"default": {{}}, "k4": {{"zoo.num_models": 4}},
                              "broken": {{"zoo.selector": "^params/nope$"}}}}}}
        """))
    return path


# ----------------------------------------------------------------------------- suites


def test_ablations_cover_the_paper_rows_and_every_override_is_valid():
    from pdiff_jax.config.defaults import get_config

    runs = suites.ablations(arch="cnn_bn", mode="subset")
    assert runs["default"] == {}
    assert {runs[f"k{k}"]["zoo.num_models"] for k in (1, 10, 50, 500)} == {1, 10, 50, 500}
    assert {runs[n][f"{suites.AE}.norm"] for n in ("norm_group", "norm_batch", "norm_none")} \
        == {"group", "batch", "none"}
    assert runs["ae_fc"] == {f"{suites.AE}.kind": "fc"}
    assert {"layers_early", "layers_middle", "t100", "t500", "ddim50", "noise_none"} <= set(runs)
    sweep = _sweep_module()
    for name, overrides in runs.items():
        sweep.check_overrides(get_config(), name, overrides)
    # Seed zoos have no subset to move: no layer rows.
    assert not any(n.startswith("layers_") for n in suites.ablations(arch="cnn_bn", mode="seed"))


@pytest.mark.parametrize("arch, sizes", [("cnn_bn", {"early": 96, "middle": 192, "late": 256}),
                                         ("resnet18", {"early": 512, "middle": 1024,
                                                       "late": 2048})])
def test_layer_depth_selectors_pick_bn_layers_of_the_architecture(arch, sizes):
    import jax

    from pdiff_jax.models import get_model
    from pdiff_jax.params.subset import ParamSpec

    kwargs = {"stem": "cifar"} if arch == "resnet18" else {}
    shape = (32, 32, 3) if arch == "resnet18" else (28, 28, 1)
    model = get_model(arch, num_classes=10, input_shape=shape, **kwargs)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0)))
    for depth, pattern in suites.LAYER_DEPTH[arch].items():
        spec = ParamSpec.from_variables(variables, pattern)
        assert spec.size == sizes[depth], depth
        assert all("bn" in n and n.endswith(("scale", "bias")) for n in spec.names)
    late = ParamSpec.from_variables(variables, model)   # the default subset is 'late'
    assert late.names == ParamSpec.from_variables(variables,
                                                  suites.LAYER_DEPTH[arch]["late"]).names


def test_factors_group_runs_by_swept_keys_with_the_reference_in_each():
    runs = {"default": {}, "k1": {"zoo.num_models": 1}, "k10": {"zoo.num_models": 10},
            "n_in": {"a.input_noise": 0.0, "a.latent_noise": 0.1},
            "n_none": {"a.latent_noise": 0.0, "a.input_noise": 0.0}}
    assert suites.factors(runs) == {"num_models": ["default", "k1", "k10"],
                                    "input_noise+latent_noise": ["default", "n_in", "n_none"]}
    assert suites.factor_keys(runs)["num_models"] == ("zoo.num_models",)


# ----------------------------------------------------------------------------- aggregator


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


def _table(md: str) -> dict[str, dict[str, str]]:
    """The first markdown table of ``md`` as {run: {column: cell}} (cells unescaped)."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    split = [[c.strip().replace("\0", "|") for c in
              ln.strip().strip("|").replace("\\|", "\0").split("|")] for ln in lines]
    header, rows = split[0], split[2:]
    assert all(len(r) == len(header) for r in rows), "a cell broke the table"
    return {r[0]: dict(zip(header, r, strict=True)) for r in rows}


def test_aggregate_matches_the_runs_results_and_shows_unfinished_runs(tmp_path):
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

    table = _table((suite_dir / "suite.md").read_text())
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


def test_an_older_versions_run_is_finished_and_shares_its_zoo(tmp_path):
    # A run made before some keys existed (their defaults keep the old behaviour) is the
    # run the current config would make: not stale, and its zoo is shared.
    from pdiff_jax.config.defaults import get_config
    from pdiff_jax.pipeline import STAGES

    current = json.loads(get_config("smoke").to_json_best_effort())
    older = json.loads(json.dumps(current))
    del older["zoo"]["precision"], older["generator"]["condition"]
    run = tmp_path / "suite" / "old"
    (run / "zoo" / "arrays").mkdir(parents=True)
    (run / "zoo" / "meta.json").write_text("{}")
    (run / "config.json").write_text(json.dumps(older))
    (run / "results.json").write_text("{}")
    sections = STAGES[0].sections
    assert suite_runner.run_state(run, current)["state"] == "finished"
    assert suite_zoos.zoo_donors(tmp_path, sections) == [
        (suite_zoos.zoo_key(current, sections), run)]
    current["zoo"]["precision"] = "bf16"   # not the default: another zoo, another run
    assert suite_runner.run_state(run, current)["state"] == "stale"
    assert suite_zoos.zoo_donors(tmp_path, sections)[0][0] != suite_zoos.zoo_key(current, sections)


def test_run_state_sees_stale_and_takeover_workdirs(tmp_path):
    held = tmp_path / "held"
    (held / "zoo").mkdir(parents=True)
    (held / "config.json").write_text('{"a": 1}')
    (held / "results.json").write_text("{}")
    assert suite_runner.run_state(held, {"a": 1})["state"] == "finished"
    assert suite_runner.run_state(held, {"a": 2})["state"] == "stale"
    empty = tmp_path / "empty"   # stopped before any artifact: a new config may take it over
    empty.mkdir()
    (empty / "config.json").write_text('{"a": 1}')
    (empty / suite_runner.LOG_FILE).write_text("ValueError: bad\n")
    assert suite_runner.run_state(empty, {"a": 2})["state"] == "interrupted"
    assert suite_runner.run_state(tmp_path / "never", {"a": 2})["state"] == "pending"
    busy = tmp_path / "busy"   # another invocation's live process: not to be started again
    busy.mkdir()
    (busy / suite_runner.STATUS_FILE).write_text(json.dumps({"state": "running",
                                                              "pid": os.getpid()}))
    assert suite_runner.run_state(busy)["state"] == "running"
    (busy / suite_runner.STATUS_FILE).write_text(json.dumps({"state": "running", "pid": -5}))
    assert suite_runner.run_state(busy)["state"] == "interrupted"


def test_last_error_line_finds_the_traceback_end_past_progress_bars(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("I1127 main.py] workdir\nTraceback (most recent call last):\n"
                   '  File "x.py", line 1\npdiff_jax.params.subset.SubsetError: no variable\n'
                   "step 1/2\rstep 2/2\n\n")
    assert suite_runner.last_error_line(log) == "pdiff_jax.params.subset.SubsetError: no variable"
    log.write_text("only\rlast words\n")
    assert suite_runner.last_error_line(log) == "last words"


# ----------------------------------------------------------------------------- runner


def test_core_groups_cover_the_allowed_cpus_once():
    groups = suite_placement.cpu_core_groups()
    flat = [c for g in groups for c in g]
    assert sorted(flat) == sorted(os.sched_getaffinity(0))


def test_slots_one_run_per_gpu_or_per_physical_core(monkeypatch):
    groups = [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert [s.cpus for s in suite_placement.plan_slots("cpu", 1, 4, groups)] == groups
    assert [s.cpus for s in suite_placement.plan_slots("cpu", 1, 2, groups)] == \
        [(0, 4, 1, 5), (2, 6, 3, 7)]
    assert [s.cpus for s in suite_placement.plan_slots("cpu", 1, 3, groups)] == \
        [(0, 4, 1, 5), (2, 6), (3, 7)]
    assert suite_placement.plan_slots("cpu", 1, 5, groups)[4].cpus == (0, 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert [s.env for s in suite_placement.plan_slots("gpu", 2, 2)] == \
        [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    shared = suite_placement.plan_slots("gpu", 2, 3)
    assert shared[2].env == {"CUDA_VISIBLE_DEVICES": "3", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert suite_placement.default_jobs("gpu", 8, 16) == 8
    assert suite_placement.default_jobs("tpu", 4, 16) == 1
    assert suite_placement.default_jobs("cpu", 1, 8, memory_gb=6.0) == 2
    assert suite_placement.default_jobs("cpu", 1, 2, memory_gb=64.0) == 2


def test_a_failed_run_is_reported_and_the_other_finishes_pinned(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    finish = ("import json, os, pathlib, time; w = pathlib.Path(os.environ['W']); "
              "(w / 'config.json').write_text('{}'); time.sleep(0.05); "
              "(w / 'results.json').write_text('{}'); "
              "print('affinity', sorted(os.sched_getaffinity(0)))")
    fail = "print('working'); raise ValueError('boom: bad override')"
    jobs = [suite_runner.Job("bad", [sys.executable, "-c", fail], tmp_path / "bad"),
            suite_runner.Job("ok", [sys.executable, "-c", finish], tmp_path / "ok")]
    said = []
    outcomes = suite_runner.run_jobs(jobs, [suite_placement.Slot(cpus=(cpu,)),
                                            suite_placement.Slot(cpus=(cpu,))],
                                     say=said.append, env={**os.environ, "W": str(tmp_path / "ok")})
    assert outcomes["bad"]["state"] == "failed" and outcomes["bad"]["returncode"] == 1
    assert outcomes["bad"]["error"] == "ValueError: boom: bad override"
    assert outcomes["bad"]["log"] == str(tmp_path / "bad" / "run.log")
    assert outcomes["ok"]["state"] == "finished" and outcomes["ok"]["max_rss_mb"] > 1
    assert f"affinity [{cpu}]" in (tmp_path / "ok" / "run.log").read_text()
    assert any("FAILED   bad" in m and "boom" in m for m in said)
    assert suite_runner.run_state(tmp_path / "bad")["state"] == "failed"
    assert suite_runner.read_status(tmp_path / "ok")["attempts"][0]["returncode"] == 0


def test_plan_prints_runs_and_overrides_and_does_no_work(tmp_path, capsys):
    config = _tiny_config(tmp_path)
    sweep = _sweep_module()
    assert sweep.main([str(config), "--suite", "pair", "--workdir-root",
                       str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out
    assert "3 runs" in out and "3 to run" in out and out.count("pending") == 3
    assert "k4  " in out and "zoo.num_models=4" in out and "(base config)" in out
    assert f"--workdir {tmp_path / 'root' / 'pair' / 'k4'} --config.zoo.num_models=4" in out
    assert not (tmp_path / "root").exists()
    with pytest.raises(SystemExit) as exited:   # a typo: one line, exit 2, no traceback
        sweep.main([str(config), "--suite", "nope"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"error: no suite 'nope'.*ablations.*pair", err), err
    with pytest.raises(SystemExit):
        sweep.main([str(config), "--suite", "pair", "--set", "zoo.num_modles=3"])
    assert 'Did you mean "num_models"' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main([str(tmp_path / "missing.py"), "--suite", "pair"])
    assert f"error: no config file {tmp_path / 'missing.py'}" in capsys.readouterr().err


# ----------------------------------------------------------------------------- end to end


def _sweep(config: Path, root: Path, *extra: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "launch" / "sweep.py"), str(config),
                           "--suite", "pair", "--run", "--workdir-root", str(root), *extra],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    return done, time.perf_counter() - start


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path, tfds_dir, small_mnist, monkeypatch):
    del small_mnist   # built once into tfds_dir: the runs only read it
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):   # the runs share the tests' cache
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", jax_cache_dir())
    config = _tiny_config(tmp_path, str(tfds_dir))
    root = tmp_path / "runs"

    done, _ = _sweep(config, root, "--only", "default,k4")
    assert done.returncode == 0, done.stdout + done.stderr
    suite_dir = root / "pair"
    table = _table((suite_dir / "suite.md").read_text())
    assert list(table) == ["default", "k4", "broken"]   # the whole suite, broken not run yet
    assert table["broken"]["state"] == "pending"
    for name in ("default", "k4"):
        r = json.loads((suite_dir / name / "results.json").read_text())
        assert table[name]["state"] == "finished"
        assert table[name]["K"] == str(r["meta"]["K"]) == ("8" if name == "default" else "4")
        assert table[name]["original"] == f"{r['original']['best']:.2f}"
        assert table[name]["p-diff best"] == f"{r['pdiff']['best']:.2f}"
        assert table[name]["p-diff med."] == f"{r['pdiff']['median']:.2f}"
        assert table[name]["gaussian best"] == f"{r['baselines']['gaussian']['best']:.2f}"
        assert float(table[name]["peak RSS MB"]) > 100
    assert (suite_dir / "plot_num_models.png").exists()

    # A second invocation does no work.
    pair = ("default", "k4")
    stamps = {n: (suite_dir / n / "results.json").stat().st_mtime_ns for n in pair}
    again, seconds = _sweep(config, root, "--only", "default,k4")
    assert again.returncode == 0, again.stderr
    assert "skipping 2 finished run(s)" in again.stdout and "started" not in again.stdout
    assert stamps == {n: (suite_dir / n / "results.json").stat().st_mtime_ns for n in pair}
    assert all(len(suite_runner.read_status(suite_dir / n)["attempts"]) == 1 for n in pair)
    assert seconds < 30

    # The whole suite: the broken run fails, is reported, and the finished ones stay so.
    full, _ = _sweep(config, root)
    assert full.returncode == 1
    assert "broken" in full.stderr and "matches no variable" in full.stderr  # main's one line
    assert str(suite_dir / "broken" / "run.log") in full.stderr
    table = _table((suite_dir / "suite.md").read_text())
    assert [table[n]["state"] for n in ("default", "k4", "broken")] == \
        ["finished", "finished", "failed"]


def jax_cache_dir() -> str:
    import jax

    return jax.config.jax_compilation_cache_dir or ""
