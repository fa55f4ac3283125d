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
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(RuntimeError):
    """An artifact is missing or unreadable; the message says what to do."""


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
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
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
    that restores cleanly, or ``(0, None)`` when there is none.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def save(self, step: int, state: Any) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(_as_numpy(state)))

    def restore_latest(self, target: Any) -> tuple[int, Any]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _as_numpy(target))
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # damaged checkpoint: fall back to an older one
                logging.warning("checkpoint step %d in %s is unreadable (%s: %s); "
                                "trying the previous one", step, self.directory,
                                type(e).__name__, e)
                continue
            return step, state
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")
