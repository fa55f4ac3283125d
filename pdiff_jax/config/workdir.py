"""Which config a workdir holds, and whether a command may run in it.

A workdir's ``config.json`` is the config its finished artifacts were made
with. A new command's config is accepted when every difference lies in config
sections that no finished artifact was made from (a failed first attempt
finished nothing, so its corrected command simply takes the workdir over);
otherwise the error names the differing keys, the artifacts they invalidate,
and what to do. Finished work is never deleted here.

Keys added by a newer pdiff_jax are no difference while they hold their
default (``pdiff_jax.config.diff``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from absl import logging

from pdiff_jax import artifacts
from pdiff_jax.config.diff import config_differences, real_differences
from pdiff_jax.errors import UsageError, WorkdirError
from pdiff_jax.runtime.checkpoint import read_json


class WorkdirConflict(ValueError, UsageError):
    """This command does not fit the workdir: another config's artifacts, or a stage
    whose inputs are missing. The message says which command or deletion fixes it."""


def _reads(key: str, sections) -> bool:
    return any(key == s or key.startswith(s + ".") for s in sections)


def check_workdir(workdir: str | os.PathLike) -> None:
    """Raise ``WorkdirError`` unless ``workdir`` exists writable or can be created.

    Creates nothing: the nearest existing ancestor must be a writable directory.
    """
    path = Path(workdir).absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        why = "a file of that name exists" if existing == path else f"{existing} is a file"
        raise WorkdirError(errno.ENOTDIR, f"cannot create workdir {path}: {why}; pass a "
                           "writable --workdir")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = (f"workdir {path} is not writable" if existing == path
                else f"cannot create workdir {path}: {existing} is not writable")
        raise WorkdirError(errno.EACCES, f"{what}; pass a writable --workdir")


def adopt(workdir: Path, config, stages) -> None:
    """Create ``workdir`` and check that it may run ``config``; see the module doc.

    That it can be created and written was checked before (``check_workdir``, called by
    ``config_check.validate_config``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    saved = workdir / artifacts.CONFIG_JSON
    if not saved.exists():
        return
    old, new = read_json(saved), json.loads(config.to_json_best_effort())
    changed = [key for key, _, _ in real_differences(old, new)]
    if not changed:
        return
    finished = [s for s in stages if s.finished(workdir)]
    # A stage's artifact depends on its own sections and on those of every stage before it.
    invalid, sections = [], []
    for stage in stages:
        sections += list(stage.sections)
        if stage in finished and any(_reads(k, sections) for k in changed):
            invalid.append(stage)
    if invalid:
        names = ", ".join(f"{artifacts.artifact_dir(workdir, s.artifact)}/" for s in invalid)
        raise WorkdirConflict(
            f"{workdir} holds artifacts made with another config ({saved} -> this command: "
            f"{'; '.join(config_differences(old, new))}); they would not "
            f"match this config. Use a new --workdir, or delete {names} to recompute them "
            "(the other artifacts are kept).")
    logging.info("workdir %s: taking the new config (%s changed; no finished artifact "
                 "depends on it)", workdir, ", ".join(changed[:5]))
    stale = artifacts.checkpoint_dir(workdir, "collect")
    first = stages[0]
    if stale.exists() and first not in finished and any(_reads(k, first.sections)
                                                         for k in changed):
        # Unfinished collection under the old settings cannot be resumed under new ones.
        logging.info("removing %s: training state of the previous config", stale)
        shutil.rmtree(stale)


def check_prerequisites(workdir: Path, todo, stages) -> None:
    """Every stage to run must find the artifacts of the stages before it, finished or
    about to be made by this command; say which command makes a missing one."""
    planned = {s.name for s in todo}
    for i, stage in enumerate(stages):
        if stage.name not in planned:
            continue
        missing = [b.name for b in stages[:i] if b.name not in planned and b.artifact
                   and not b.finished(workdir)]
        if missing:
            raise WorkdirConflict(
                f"stage '{stage.name}' needs the '{missing[0]}' stage's result, which "
                f"{workdir} does not have yet: run the same command without --stages "
                f"(or with --stages={','.join([*missing, stage.name])}) to make it first")
