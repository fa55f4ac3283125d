"""Faults: SIGKILL inside every stage, damaged checkpoints and artifacts, determinism.

The kill test runs ``python -m pdiff_jax.main`` on a tiny config in a
subprocess, kills it (SIGKILL) at a random moment inside collect, autoencoder,
diffusion and evaluate in turn, reruns the same command each time, and
compares the final artifacts with one uninterrupted run of the same command.
XLA on the CPU is deterministic for these runs, so the comparison is exact:
same bits, not a tolerance. The random delays come from ``PDIFF_FAULT_SEED``
(printed on failure; set it to replay a run).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from pdiff_jax import artifacts
from pdiff_jax.runtime.checkpoint import CheckpointError, read_json, restore_pytree

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 1200   # catches a hang: a loaded machine takes minutes per run
FAULT_SEED = int(os.environ.get("PDIFF_FAULT_SEED", time.time_ns() % 100_000))

# Orbax sometimes reports "Event loop is closed" from a garbage-collected callback
# after a restore of a damaged checkpoint fails; the failure itself is what we test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _overrides(tfds_dir) -> list[str]:
    """Smoke sizes, smaller still, with checkpoints every few steps so kills land between."""
    return [
        f"--config={ROOT / 'configs/default.py'}:smoke",
        f"--config.data.data_dir={tfds_dir}",
        "--config.data.max_train=1000", "--config.data.max_test=300",
        "--config.evaluate.train_examples=300", "--config.evaluate.tsne=False",
        "--config.zoo.checkpoint_every=2",
        # Warm (compiled) steps take ~10-50 ms: enough of them that a kill lands inside.
        "--config.generator.autoencoder.train.steps=300",
        "--config.generator.autoencoder.train.checkpoint_every=50",
        "--config.generator.diffusion.train.steps=300",
        "--config.generator.diffusion.train.checkpoint_every=50",
    ]


def _env() -> dict:
    # The suite's persistent compilation cache: a rerun compiles nothing again.
    cache = os.environ.get("PDIFF_TEST_JAX_CACHE", str(ROOT / ".pytest_cache" / "jax"))
    return dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache,
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5", JAX_PLATFORMS="cpu")


def _command(workdir: Path, tfds_dir) -> list[str]:
    return [sys.executable, "-m", "pdiff_jax.main", f"--workdir={workdir}", *_overrides(tfds_dir)]


def _run_to_end(workdir: Path, tfds_dir, log: Path) -> str:
    with open(log, "a") as f:
        res = subprocess.run(_command(workdir, tfds_dir), stdout=f, stderr=subprocess.STDOUT,
                             env=_env(), timeout=TIMEOUT_S, check=False, cwd=ROOT)
    text = log.read_text()
    assert res.returncode == 0, f"run failed (rc {res.returncode}):\n{text[-4000:]}"
    return text


def _run_and_kill(workdir: Path, tfds_dir, log: Path, trigger, delay: float) -> str:
    """Start the command, SIGKILL it ``delay`` s after ``trigger(log text)`` is true.

    Returns the log of this attempt."""
    start = log.stat().st_size if log.exists() else 0
    with open(log, "a") as f:
        proc = subprocess.Popen(_command(workdir, tfds_dir), stdout=f, stderr=subprocess.STDOUT,
                                env=_env(), cwd=ROOT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            text = log.read_text()[start:]
            if trigger(text):
                break
            if proc.poll() is not None:
                pytest.fail(f"run ended (rc {proc.returncode}) before the kill point "
                            f"(PDIFF_FAULT_SEED={FAULT_SEED}):\n{text[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"kill point not reached in {TIMEOUT_S} s:\n{text[-4000:]}")
            time.sleep(0.02)
        time.sleep(delay)
        assert proc.poll() is None, f"run ended before the kill:\n{log.read_text()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return log.read_text()[start:]


def _step_dirs(ckpt_dir: Path) -> list[int]:
    """Finished checkpoint steps (Orbax renames '<step>.orbax-checkpoint-tmp' when done)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())


def _has_step(ckpt_dir: Path, at_least: int = 1):
    return lambda text: any(s >= at_least for s in _step_dirs(ckpt_dir))


def _damage(step_dir: Path) -> None:
    """Truncate every array data file of a checkpoint step (a torn write)."""
    files = [f for f in step_dir.rglob("*") if f.is_file() and f.parent.name == "d"]
    assert files, f"no data files under {step_dir}"
    for f in files:
        f.write_bytes(f.read_bytes()[:3])


def _digest(path: Path) -> dict:
    """{relative file: (sha256, mtime_ns)} of everything under ``path``."""
    return {str(f.relative_to(path)): (hashlib.sha256(f.read_bytes()).hexdigest(),
                                      f.stat().st_mtime_ns)
            for f in sorted(path.rglob("*")) if f.is_file()}


def _accuracies(results: dict) -> dict:
    """Every accuracy and index in results.json (timings and paths excluded)."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("meta", "timings_s"):
                    walk(v, f"{prefix}/{k}")
        elif isinstance(node, (int, float)):
            out[prefix] = node

    walk(results, "")
    return out


ARTIFACTS = ("zoo", "autoencoder", "diffusion", "samples", "evaluation")


def _arrays(path: Path):
    """The arrays of a stage artifact (``arrays/`` + ``meta.json``) or of a bare Orbax tree."""
    return restore_pytree(path / "arrays" if artifacts.exists(path) else path)


def _assert_same_artifacts(a: Path, b: Path) -> None:
    for name in ARTIFACTS:
        left, right = _arrays(a / name), _arrays(b / name)
        assert jax.tree.structure(left) == jax.tree.structure(right), name
        for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(left),
                                jax.tree.leaves(right), strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"{name}{jax.tree_util.keystr(path)}")
    for name in ("autoencoder", "diffusion"):
        left, right = (read_json(d / name / "meta.json") for d in (a, b))
        left.pop("seconds"), right.pop("seconds")
        assert left == right, name
    assert _accuracies(read_json(a / "results.json")) == \
        _accuracies(read_json(b / "results.json"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tfds_dir):
    """One uninterrupted run of the command the kill test interrupts."""
    wd = tmp_path_factory.mktemp("faults") / "reference"
    _run_to_end(wd, tfds_dir, wd.parent / "reference.log")
    return wd


# ----------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_sigkill_in_every_stage_resumes_to_identical_artifacts(reference, tfds_dir, tmp_path):
    rng = random.Random(FAULT_SEED)
    wd, log = tmp_path / "run", tmp_path / "run.log"
    ckpt = {"collect": wd / "checkpoints" / "collect" / "subset",
            "autoencoder": wd / "checkpoints" / "autoencoder",
            "diffusion": wd / "checkpoints" / "diffusion"}
    delays = {"collect": rng.uniform(0.0, 0.4), "autoencoder": rng.uniform(0.0, 0.5),
              "diffusion": rng.uniform(0.0, 0.5), "evaluate": rng.uniform(0.2, 1.5)}
    where = f"(PDIFF_FAULT_SEED={FAULT_SEED}, delays {delays})"

    # 1. collect: killed while the subset snapshots are being trained.
    _run_and_kill(wd, tfds_dir, log, _has_step(ckpt["collect"]), delays["collect"])
    assert not artifacts.exists(wd / "zoo"), f"the kill came after collect {where}"
    killed_at = _step_dirs(ckpt["collect"])

    # 2. autoencoder: the rerun resumes collect, finishes it, and is killed in the autoencoder.
    text = _run_and_kill(wd, tfds_dir, log, _has_step(ckpt["autoencoder"]),
                         delays["autoencoder"])
    assert f"resuming from checkpoint step {killed_at[-1]} in {ckpt['collect']}" in text, where
    assert artifacts.exists(wd / "zoo")
    assert not (wd / "autoencoder").exists(), f"the kill came after the autoencoder {where}"
    zoo_files = _digest(wd / "zoo")
    killed_at = _step_dirs(ckpt["autoencoder"])

    # 3. diffusion: killed once two checkpoints exist; then its newest one is damaged.
    text = _run_and_kill(wd, tfds_dir, log, _has_step(ckpt["diffusion"], 100),
                         delays["diffusion"])
    assert f"resuming from checkpoint step {killed_at[-1]} in {ckpt['autoencoder']}" in text
    assert not (wd / "diffusion").exists(), f"the kill came after diffusion {where}"
    *_, good, newest = _step_dirs(ckpt["diffusion"])  # Orbax keeps the newest two
    _damage(ckpt["diffusion"] / str(newest))

    # 4. evaluate: the rerun skips the damaged step, resumes diffusion from step 10, samples,
    #    and is killed while evaluating.
    text = _run_and_kill(wd, tfds_dir, log, lambda t: "stage evaluate" in t, delays["evaluate"])
    assert f"checkpoint step {newest} in {ckpt['diffusion']} is unreadable" in text, text[-3000:]
    assert f"resuming from checkpoint step {good} in {ckpt['diffusion']}" in text
    assert artifacts.exists(wd / "samples")
    assert not artifacts.exists(wd / "evaluation"), f"the kill came after evaluate {where}"

    # 5. to the end: nothing left to resume but the evaluation, which reruns.
    text = _run_to_end(wd, tfds_dir, log)
    assert "collect: zoo exists, skipping" in text
    assert _digest(wd / "zoo") == zoo_files  # finished work is never rewritten
    _assert_same_artifacts(reference, wd)


# ----------------------------------------------------------------------------- damaged files


def _copy_run(reference: Path, dest: Path, *, drop=()) -> Path:
    shutil.copytree(reference, dest, symlinks=True)
    for name in drop:
        shutil.rmtree(dest / name)
    return dest


def _config(workdir: Path) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(read_json(workdir / "config.json"))


def test_partial_artifact_is_ignored_and_the_stage_reruns(reference, tmp_path):
    from pdiff_jax.pipeline import run_pipeline

    wd = _copy_run(reference, tmp_path / "run", drop=["samples", "evaluation"])
    # What a writer killed inside save_artifact leaves: the artifact under a temporary name.
    partial = wd / ".samples.partial-killed"
    shutil.copytree(reference / "samples", partial)
    _damage(partial / "arrays")
    assert not artifacts.exists(wd / "samples")
    run_pipeline(_config(wd), wd, stages=["sample"])
    assert artifacts.exists(wd / "samples")
    got, want = restore_pytree(wd / "samples" / "arrays"), \
        restore_pytree(reference / "samples" / "arrays")
    jax.tree.map(np.testing.assert_array_equal, got, want)
    assert not list(wd.glob(".samples.partial*")), "the stale partial artifact was left behind"


def test_failed_rerun_reports_damage_and_deletes_nothing(reference, tmp_path):
    from pdiff_jax.pipeline import run_pipeline

    wd = _copy_run(reference, tmp_path / "run", drop=["evaluation"])
    _damage(wd / "samples" / "arrays")
    before = {name: _digest(wd / name) for name in ("zoo", "autoencoder", "diffusion", "samples")}
    with pytest.raises(CheckpointError) as info:
        run_pipeline(_config(wd), wd, stages=["evaluate", "report"])
    message = str(info.value)
    assert str(wd / "samples" / "arrays") in message and "unreadable" in message
    assert "delete it and rerun" in message
    after = {name: _digest(wd / name) for name in ("zoo", "autoencoder", "diffusion", "samples")}
    assert after == before
    assert not (wd / "evaluation").exists()


def test_damaged_newest_stage_checkpoint_falls_back_to_the_previous(reference, tmp_path,
                                                                   caplog):
    """The zoo stage, in process: its newest snapshot checkpoint is torn, the older one used."""
    from pdiff_jax.pipeline import run_pipeline

    wd = _copy_run(reference, tmp_path / "run",
                   drop=["zoo", "autoencoder", "diffusion", "samples", "evaluation"])
    subset = wd / "checkpoints" / "collect" / "subset"
    steps = _step_dirs(subset)
    assert steps == [14, 16]  # max_to_keep = 2, a checkpoint every 2 snapshots
    _damage(subset / "16")
    with caplog.at_level("INFO"):
        run_pipeline(_config(wd), wd, stages=["collect"])
    assert f"checkpoint step 16 in {subset} is unreadable" in caplog.text
    assert f"resuming from checkpoint step 14 in {subset}" in caplog.text
    got = restore_pytree(wd / "zoo" / "arrays")
    want = restore_pytree(reference / "zoo" / "arrays")
    jax.tree.map(np.testing.assert_array_equal, got, want)


# ----------------------------------------------------------------------------- determinism


def test_sample_is_a_pure_function_of_the_key(reference):
    """No hidden state between calls or loads, and the pipeline's samples are the API's."""
    import pdiff_jax
    from pdiff_jax.pipeline import stage_key

    gen = pdiff_jax.load(reference)
    kw = dict(sampler="ddim", steps=10)
    a = gen.sample(jax.random.key(7), 3, **kw)
    gen.sample(jax.random.key(8), 5, **kw)  # another draw in between changes nothing
    b = pdiff_jax.sample(jax.random.key(7), 3, workdir=reference, **kw)  # a fresh load
    np.testing.assert_array_equal(a.vectors, b.vectors)
    jax.tree.map(np.testing.assert_array_equal, a.variables, b.variables)
    config = _config(reference)
    stored = restore_pytree(reference / "samples" / "arrays")["vectors"]
    again = gen.sample(stage_key(config.seed, "sample"), len(stored), **kw).vectors
    np.testing.assert_array_equal(again, stored)
