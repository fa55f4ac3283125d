"""Checkpoints (pdiff_jax.runtime.checkpoint): atomic artifacts, resumable training
checkpoints, JSON."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.runtime.checkpoint import (
    CheckpointError,
    TrainCheckpoints,
    read_json,
    restore_pytree,
    save_pytree,
    write_json,
)

# Orbax sometimes reports "Event loop is closed" from a garbage-collected callback
# after a restore of a damaged checkpoint fails; the failure itself is what we test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TMP = ".orbax-checkpoint-tmp"  # what Orbax 0.12.8 appends while a save is in progress


def _tree(scale=1.0):
    rng = np.random.default_rng(0)
    return {
        "params": {"dense": {"kernel": (scale * rng.standard_normal((3, 4))).astype(np.float32),
                             "bias": np.full((4,), scale, np.float32)},
                   "half": rng.standard_normal(5).astype(np.float16)},
        "batch_stats": {"mean": np.arange(4, dtype=np.float32) * scale},
        "count": np.asarray(7, np.int32),
        "ids": np.arange(6, dtype=np.int32).reshape(2, 3),
    }


def _identical(a, b):
    chex.assert_trees_all_equal_structs(a, b)
    chex.assert_trees_all_equal_dtypes(a, b)
    chex.assert_trees_all_equal(a, b, strict=True)


def _data_files(path: Path):
    """The array data files Orbax (OCDBT) wrote under a checkpoint directory."""
    files = [f for f in path.rglob("*") if f.is_file() and f.parent.name == "d"]
    assert files, f"no data files under {path}"
    return files


def _truncate_data(path: Path):
    for f in _data_files(path):
        f.write_bytes(f.read_bytes()[:3])


def _garble_metadata(path: Path):
    for f in path.rglob("_METADATA"):
        f.write_text("not json {")


# ---------------------------------------------------------------------------
# save_pytree / restore_pytree


def test_round_trip_exact(tmp_path):
    tree = _tree()
    out = save_pytree(tmp_path / "a" / "zoo", tree)
    assert out == (tmp_path / "a" / "zoo").absolute()
    _identical(restore_pytree(out), tree)
    # With a target: structure, shapes and dtypes from the target, values from disk.
    _identical(restore_pytree(out, target=jax_like(tree)), tree)


def jax_like(tree):
    """Targets may be jax arrays (a freshly initialised state)."""
    return {k: (jax_like(v) if isinstance(v, dict) else jnp.zeros_like(v))
            for k, v in tree.items()}


def test_jax_arrays_are_saved_as_host_copies(tmp_path):
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3, jnp.bfloat16)}
    save_pytree(tmp_path / "x", tree)
    back = restore_pytree(tmp_path / "x")
    assert all(isinstance(v, np.ndarray) for v in back.values())
    _identical(back, {k: np.asarray(v) for k, v in tree.items()})


def test_refuses_to_overwrite(tmp_path):
    save_pytree(tmp_path / "x", _tree())
    with pytest.raises(CheckpointError, match="already exists; refusing to overwrite"):
        save_pytree(tmp_path / "x", _tree(scale=2.0))
    _identical(restore_pytree(tmp_path / "x"), _tree())


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match=f"no checkpoint at {tmp_path / 'nothing'}$"):
        restore_pytree(tmp_path / "nothing")


@pytest.mark.parametrize("damage", [_truncate_data, _garble_metadata])
def test_corrupted_artifact_names_path(tmp_path, damage):
    path = save_pytree(tmp_path / "x", _tree())
    damage(path)
    with pytest.raises(CheckpointError, match=f"checkpoint at {path} is unreadable"):
        restore_pytree(path)


def test_partial_artifact(tmp_path):
    # What a writer killed mid-save leaves (seen with kill -9 on Orbax 0.12.8).
    partial = tmp_path / f"x{TMP}"
    save_pytree(tmp_path / "done", _tree())
    shutil.copytree(tmp_path / "done", partial)
    _truncate_data(partial)
    with pytest.raises(CheckpointError, match=f"no checkpoint at .*x; .*x{TMP} is a partly"):
        restore_pytree(tmp_path / "x")
    with pytest.raises(CheckpointError, match="is a partly written checkpoint"):
        restore_pytree(partial)
    # Saving again replaces the leftover and gives a complete artifact.
    save_pytree(tmp_path / "x", _tree(scale=3.0))
    assert not partial.exists()
    _identical(restore_pytree(tmp_path / "x"), _tree(scale=3.0))


# ---------------------------------------------------------------------------
# TrainCheckpoints


def _state(step):
    return {"w": np.full((2, 3), step, np.float32), "step": np.asarray(step, np.int32)}


def _saved_steps(directory, steps, max_to_keep=5):
    with TrainCheckpoints(directory, max_to_keep=max_to_keep) as ckpts:
        for s in steps:
            ckpts.save(s, _state(s))


def _restore(directory, target=None):
    with TrainCheckpoints(directory) as ckpts:
        return ckpts.restore_latest(_state(0) if target is None else target)


def test_fresh_directory_restores_nothing(tmp_path):
    assert _restore(tmp_path / "ckpt") == (0, None)


def test_resume_newest_and_keep_limit(tmp_path):
    d = tmp_path / "ckpt"
    _saved_steps(d, [1, 2, 3, 4], max_to_keep=2)
    assert sorted(os.listdir(d)) == ["3", "4"]
    step, state = _restore(d)
    assert step == 4
    _identical(state, _state(4))


@pytest.mark.parametrize("damage", [_truncate_data, _garble_metadata])
def test_corrupted_newest_step_falls_back(tmp_path, damage):
    d = tmp_path / "ckpt"
    _saved_steps(d, [1, 2, 3])
    damage(d / "3")
    step, state = _restore(d)
    assert step == 2
    _identical(state, _state(2))


def test_damaged_step_directory_does_not_poison_the_others(tmp_path):
    # An empty newest step directory (or one without its item) once made Orbax's
    # layout inference fail every restore and every later save.
    d = tmp_path / "ckpt"
    _saved_steps(d, [1, 2])
    (d / "3").mkdir()
    shutil.copytree(d / "2", d / "4")
    shutil.rmtree(d / "4" / "default")
    with TrainCheckpoints(d, max_to_keep=5) as ckpts:
        step, state = ckpts.restore_latest(_state(0))
        assert step == 2
        _identical(state, _state(2))
        ckpts.save(5, _state(5))
    step, state = _restore(d)
    assert step == 5
    _identical(state, _state(5))


def test_partially_written_step_is_ignored_and_cleaned(tmp_path):
    d = tmp_path / "ckpt"
    _saved_steps(d, [1, 2])
    # The layout a writer killed mid-save leaves (observed with kill -9): a
    # temporary step directory holding metadata and an unfinished item.
    partial = d / f"3{TMP}"
    partial.mkdir()
    shutil.copy(d / "2" / "_CHECKPOINT_METADATA", partial)
    (partial / f"default{TMP}").mkdir()
    with TrainCheckpoints(d) as ckpts:
        step, state = ckpts.restore_latest(_state(0))
        assert step == 2
        _identical(state, _state(2))
        ckpts.save(3, _state(3))  # the interrupted step can be written again
    assert not partial.exists()
    step, state = _restore(d)
    assert step == 3
    _identical(state, _state(3))


def test_stale_partial_steps_are_removed(tmp_path):
    d = tmp_path / "ckpt"
    _saved_steps(d, [1])
    shutil.copytree(d / "1", d / f"7{TMP}")  # stale, from a killed run; never resumed from
    with TrainCheckpoints(d) as ckpts:
        assert ckpts.restore_latest(_state(0))[0] == 1
        ckpts.save(2, _state(2))
    assert sorted(os.listdir(d)) == ["1", "2"]


def test_complete_step_without_commit_marker_restores(tmp_path):
    # On a local file system Orbax commits by renaming the temporary directory;
    # commit_success.txt is not consulted, so a complete step without it is fine.
    d = tmp_path / "ckpt"
    _saved_steps(d, [1])
    shutil.copytree(d / "1", d / "2")
    for marker in (d / "2").rglob("commit_success.txt"):
        marker.unlink()
    step, state = _restore(d)
    assert step == 2
    _identical(state, _state(1))


def test_all_steps_unreadable_raises(tmp_path):
    d = tmp_path / "ckpt"
    _saved_steps(d, [1, 2])
    for s in ("1", "2"):
        _truncate_data(d / s)
    expected = f"(?s)no checkpoint in {d} restores.*step 2: .*step 1: "
    with pytest.raises(CheckpointError, match=expected):
        _restore(d)


def test_changed_state_structure_raises(tmp_path):
    d = tmp_path / "ckpt"
    _saved_steps(d, [1])
    with pytest.raises(CheckpointError, match="state structure may have changed"):
        _restore(d, target={"other": np.zeros(3, np.float32)})


# ---------------------------------------------------------------------------
# JSON


def test_json_round_trip_with_numpy(tmp_path):
    path = tmp_path / "meta" / "info.json"
    write_json(path, {"acc": np.float32(0.5), "n": np.int64(3), "v": np.arange(3), "s": "x"})
    assert read_json(path) == {"acc": 0.5, "n": 3, "v": [0, 1, 2], "s": "x"}
    write_json(path, {"acc": 1.0})  # replaces atomically
    assert read_json(path) == {"acc": 1.0}
    assert os.listdir(path.parent) == ["info.json"]


def test_json_unserialisable_leaves_old_file_and_no_temporaries(tmp_path):
    path = tmp_path / "info.json"
    write_json(path, {"ok": True})
    with pytest.raises(TypeError, match="not JSON-serialisable: object"):
        write_json(path, {"bad": object()})
    assert read_json(path) == {"ok": True}
    assert os.listdir(tmp_path) == ["info.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_json_and_artifact_files_share_the_umask_mode(tmp_path, umask):
    # config.json used to be 0600 (tempfile.mkstemp) while Orbax files were 0644.
    from pdiff_jax.artifacts import save_artifact

    old = os.umask(umask)
    try:
        write_json(tmp_path / "config.json", {"a": 1})
        write_json(tmp_path / "config.json", {"a": 2})  # a replacement too
        save_artifact(tmp_path / "art", {"x": np.zeros(3, np.float32)}, {"m": 1})
        (tmp_path / "plain.txt").write_text("x")  # what open() makes
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777
             for p in tmp_path.rglob("*") if p.is_file()}
    assert modes["config.json"] == 0o666 & ~umask
    assert modes["art/meta.json"] == 0o666 & ~umask
    assert set(modes.values()) == {0o666 & ~umask}, modes
