"""Orbax owns every array this library writes (zoos, generators, train states).

Three things live here:
  * ``save_pytree`` / ``restore_pytree``: one finished artifact, written
    atomically (Orbax writes to a temporary directory and renames it when the
    save is complete), so a killed process never leaves a half-written
    artifact under the final name.
  * ``TrainCheckpoints``: periodic checkpoints of a training loop with resume.
    A checkpoint that fails to restore (partly written, corrupted) is reported
    and skipped in favour of the previous good one.
  * small atomic JSON helpers for metadata next to the arrays.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from pdiff_jax.errors import CheckpointError

# Orbax 0.12.8 on a local file system writes '<name>.orbax-checkpoint-tmp' (no
# timestamp) and renames it to '<name>' once every file is written; a killed
# writer leaves the temporary directory behind. The next save of the same name
# deletes it; ``TrainCheckpoints`` also removes stale ones (cleanup_tmp_directories).
_TMP_SUFFIX = ocp.utils.TMP_DIR_SUFFIX


def _as_numpy(tree):
    # Save host copies: the artifact must not depend on the devices that wrote it.
    return jax.tree.map(lambda x: np.asarray(x), tree)


def save_pytree(path: str | os.PathLike, tree: Any) -> Path:
    """Write ``tree`` (a pytree of arrays) to ``path`` atomically; replaces nothing.

    Raises ``CheckpointError`` if ``path`` already exists: finished work is
    never overwritten. Delete it explicitly to recompute.
    """
    path = Path(path).absolute()
    if path.exists():
        raise CheckpointError(f"{path} already exists; refusing to overwrite finished work. "
                              "Delete it to recompute.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, _as_numpy(tree))
        ckptr.wait_until_finished()
    return path


def restore_pytree(path: str | os.PathLike, target: Any = None) -> Any:
    """Read a pytree written by :func:`save_pytree` as numpy arrays.

    ``target`` (a pytree of arrays or ``jax.ShapeDtypeStruct``) fixes the
    structure, shapes and dtypes; without it the stored structure is used.
    """
    path = Path(path).absolute()
    if _TMP_SUFFIX in path.name:
        raise CheckpointError(f"{path} is a partly written checkpoint (Orbax writes to "
                              f"'<name>{_TMP_SUFFIX}' and renames it when the save completes); "
                              "delete it and rerun the stage that writes it.")
    if not path.exists():
        partial = path.with_name(path.name + _TMP_SUFFIX)
        hint = (f"; {partial} is a partly written save (the writer was killed?): delete it and "
                "rerun the stage that writes it" if partial.exists() else "")
        raise CheckpointError(f"no checkpoint at {path}{hint}")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            if target is None:
                tree = ckptr.restore(path)
            else:
                abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _as_numpy(target))
                tree = ckptr.restore(path, abstract)
    except Exception as e:  # Orbax raises many types for damaged files.
        raise CheckpointError(
            f"checkpoint at {path} is unreadable ({type(e).__name__}: {e}). It may be partly "
            "written or corrupted; delete it and rerun the stage that writes it.") from e
    return jax.tree.map(np.asarray, tree)


class TrainCheckpoints:
    """Periodic, resumable checkpoints of one training loop.

    ``save(step, state)`` keeps the newest ``max_to_keep`` steps;
    ``restore_latest(target)`` returns ``(step, state)`` of the newest step
    that restores cleanly, or ``(0, None)`` when there is none. A step that
    fails to restore (truncated files, a step directory left empty or missing
    its item) is logged and skipped; if every step fails, ``CheckpointError``
    is raised rather than silently starting the run again from scratch.

    Partly written saves (``<step>.orbax-checkpoint-tmp`` directories left by a
    killed process) are never listed as steps; Orbax deletes them in the
    background on opening (finished at the latest before the first save).
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 cleanup_tmp_directories=True),
            # One explicit item. Left to infer its layout, the manager reads the
            # newest step directory; a damaged one (empty, or without its
            # 'default' item) then makes every restore and save fail with
            # "Must provide `args` of type `Composite`", good steps included.
            item_handlers=ocp.StandardCheckpointHandler(),
        )

    def save(self, step: int, state: Any) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(_as_numpy(state)))

    def restore_latest(self, target: Any) -> tuple[int, Any]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _as_numpy(target))
        self._manager.wait_until_finished()  # a save in flight is not yet a step
        self._manager.reload()  # see steps written or damaged since opening
        steps = sorted(self._manager.all_steps(), reverse=True)
        failures = []
        for step in steps:
            try:
                state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # damaged checkpoint: fall back to an older one
                failures.append(f"step {step}: {type(e).__name__}: {str(e)[:300]}")
                logging.warning("checkpoint step %d in %s is unreadable (%s: %s); "
                                "trying the previous one", step, self.directory,
                                type(e).__name__, e)
                continue
            logging.info("resuming from checkpoint step %d in %s", step, self.directory)
            return step, state
        if failures:
            raise CheckpointError(
                f"no checkpoint in {self.directory} restores ({len(failures)} tried; the state "
                "structure may have changed, or the files are damaged). Delete the directory "
                "to start over.\n" + "\n".join(failures))
        return 0, None

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        # An unserialisable object must not leave a stray temporary file behind.
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file next to ``path``, created with mode 0666 minus the umask.

    Like every other artifact (0644 under the usual umask 022). ``tempfile.mkstemp``
    would make it 0600 whatever the umask, and the rename keeps that mode.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")
