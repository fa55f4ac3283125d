"""End to end: `python -m pdiff_jax.main` on tiny settings, then the notebook API on its workdir."""

import json
import subprocess

import jax
import numpy as np
import pytest

import pdiff_jax
from pdiff_jax import artifacts
from pdiff_jax.runtime.checkpoint import CheckpointError, restore_pytree


def test_main_runs_every_stage(smoke_run):
    workdir, proc, elapsed, _ = smoke_run
    for name in ("zoo", "autoencoder", "diffusion", "samples", "evaluation"):
        assert (workdir / name).is_dir(), name
    for name in ("config.json", "metrics.jsonl", "report.md", "results.json", "accuracy.png"):
        assert (workdir / name).is_file(), name
    assert "p-diff best" in proc.stdout   # the one-screen summary
    print(f"smoke run took {elapsed:.1f} s")


def test_results_json_has_the_documented_keys(smoke_run):
    results = json.loads((smoke_run[0] / "results.json").read_text())
    for section, key in [("original", "best"), ("original", "median"), ("ensemble", "acc"),
                         ("pdiff", "best"), ("pdiff", "avg"), ("pdiff", "median"),
                         ("pdiff", "n")]:
        assert section in results and key in results[section], (section, key)
    assert results["pdiff"]["n"] == 8
    assert 0.0 <= results["pdiff"]["best"] <= 100.0
    assert set(results["baselines"]) == {"noise_0.01", "noise_0.05", "noise_0.1", "average_16",
                                         "gaussian"}
    for key in ("iou_orig_orig", "iou_gen_gen", "iou_orig_gen", "max_iou_gen_mean"):
        assert key in results["novelty"]


def test_metrics_log_is_json_lines(smoke_run):
    lines = (smoke_run[0] / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    stages = {r["stage"] for r in records}
    assert {"autoencoder", "diffusion", "timing"} <= stages


def test_rerun_skips_finished_stages(smoke_run):
    workdir, _, _, cmd = smoke_run
    before = {p: (workdir / p / "meta.json").stat().st_mtime_ns
              for p in ("zoo", "samples", "evaluation")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "zoo exists, skipping" in proc.stderr
    after = {p: (workdir / p / "meta.json").stat().st_mtime_ns for p in before}
    assert before == after


def test_sample_api_is_pure_and_gives_usable_networks(smoke_run, small_mnist):
    workdir = smoke_run[0]
    a = pdiff_jax.sample(jax.random.key(7), n=3, workdir=workdir, sampler="ddim", steps=5)
    b = pdiff_jax.sample(jax.random.key(7), n=3, workdir=workdir, sampler="ddim", steps=5)
    c = pdiff_jax.sample(jax.random.key(8), n=3, workdir=workdir, sampler="ddim", steps=5)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.array_equal(a.vectors, c.vectors)
    gen = pdiff_jax.load(workdir)
    assert a.vectors.shape == (3, gen.zoo.spec.size)
    logits = jax.vmap(lambda v: gen.model_def.apply(v, small_mnist.x_test[:16]))(a.variables)
    assert logits.shape == (3, 16, 10) and np.all(np.isfinite(logits))


def test_sample_rejects_bad_n(smoke_run):
    with pytest.raises(ValueError, match="positive"):
        pdiff_jax.sample(jax.random.key(0), n=0, workdir=smoke_run[0])


def test_load_without_a_run_names_the_command(tmp_path):
    with pytest.raises(CheckpointError, match=r"python -m pdiff_jax\.main"):
        pdiff_jax.load(tmp_path)


def test_other_config_in_same_workdir_is_refused(smoke_run):
    workdir, _, _, cmd = smoke_run
    proc = subprocess.run([*cmd, "--config.seed=1"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode != 0
    assert "another config" in proc.stderr and "seed" in proc.stderr
    assert f"delete {workdir / 'zoo'}/" in proc.stderr   # names what to remove
    assert artifacts.exists(workdir / "zoo")


def test_report_only_config_change_is_accepted(smoke_run):
    """A change that no finished artifact depends on (here: the report's t-SNE) runs."""
    workdir, _, _, cmd = smoke_run
    proc = subprocess.run([*cmd, "--config.evaluate.tsne=False"], capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((workdir / "config.json").read_text())["evaluate"]["tsne"] is False
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_evaluate_api_returns_results(smoke_run):
    import pdiff_jax.zoo.store  # a submodule import must not shadow pdiff_jax.evaluate

    workdir = smoke_run[0]
    results = pdiff_jax.evaluate(workdir)
    # Checked against an independent measurement of the stored samples.
    run = pdiff_jax.load(workdir)
    vectors = restore_pytree(workdir / "samples" / "arrays")["vectors"]
    test_acc, train_acc = run.accuracy(vectors), run.accuracy(vectors, split="train")
    np.testing.assert_allclose(results["pdiff"]["avg"], test_acc.mean(), rtol=1e-6)
    assert results["pdiff"]["best"] == pytest.approx(float(test_acc[np.argmax(train_acc)]))
    # Every stage's time survives, whichever command finished the run.
    assert {"collect", "autoencoder", "diffusion", "sample", "evaluate"} <= set(
        results["meta"]["timings_s"])
