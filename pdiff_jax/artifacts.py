"""The workdir layout, and finished stage artifacts written atomically.

A run's workdir holds, for every stage, one artifact directory:

    config.json        the exact config of the run
    metrics.jsonl      one JSON object per logged training step
    zoo/               collect      the parameter zoo (base variables, vectors f32[K, D])
    autoencoder/       autoencoder  AE params, normalizer, zoo latents
    diffusion/         diffusion    denoiser EMA params, latent scale
    samples/           sample       generated vectors and latents
    evaluation/        evaluate     per-model accuracies and wrong masks, results
    report.md, results.json, *.png  report (rendered from the artifacts above)
    checkpoints/<stage>/            resumable training state of a stage in progress

A suite's root holds one workdir per run (each with ``run.log`` and
``.sweep_status.json``) and ``suite.md``, ``suite.json`` and ``plot_<metric>.png``.

Every file and directory name above is a constant here and written nowhere else.
This module imports no JAX at the top (the suite runner reads the names without
starting a backend); reading and writing arrays imports Orbax on first use.

An artifact directory holds ``arrays/`` (an Orbax pytree) and ``meta.json``.
It is assembled under a temporary name and renamed into place only when
complete, so a killed run leaves either the whole artifact or none; ``exists``
is therefore the test for "this stage is done". A stage's ``meta.json`` also
records how long the stage took (``seconds``), so the report can show every
stage's time whichever command finished the run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pdiff_jax.errors import CheckpointError

# Stage artifacts (directories).
ZOO, AUTOENCODER, DIFFUSION, SAMPLES, EVALUATION = (
    "zoo", "autoencoder", "diffusion", "samples", "evaluation")
# Inside an artifact.
ARRAYS, META_JSON = "arrays", "meta.json"
# A run's own files.
RESULTS_JSON, REPORT_MD, CONFIG_JSON = "results.json", "report.md", "config.json"
METRICS_JSONL, CHECKPOINTS = "metrics.jsonl", "checkpoints"
# The report's pictures, beside report.md.
ACCURACY_PNG, NOVELTY_PNG, TSNE_PNG, TRAJECTORIES_PNG = (
    "accuracy.png", "novelty.png", "tsne_latents.png", "trajectories.png")
CONDITIONAL_LEVELS_PNG, FRONTIER_PNG = "conditional_levels.png", "frontier.png"
# A suite: per run, and at its root.
RUN_LOG, SWEEP_STATUS_JSON = "run.log", ".sweep_status.json"
SUITE_MD, SUITE_JSON = "suite.md", "suite.json"


def suite_plot_name(label: str) -> str:
    """The file of a suite's plot of ``label`` (any text: made safe for a file name)."""
    return "plot_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in label) + ".png"


def artifact_dir(workdir: str | os.PathLike, name: str) -> Path:
    """The directory of artifact ``name`` (one of the constants above) in ``workdir``."""
    return Path(workdir) / name


def checkpoint_dir(workdir: str | os.PathLike, stage: str, part: str = "") -> Path:
    """Where a stage keeps its resumable training state (``part``: one of its loops)."""
    d = Path(workdir) / CHECKPOINTS / stage
    return d / part if part else d


def exists(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / META_JSON).is_file() and (path / ARRAYS).is_dir()


def save_artifact(path: str | os.PathLike, arrays: Any, meta: dict) -> Path:
    """Write ``arrays`` and ``meta`` to ``path``; refuses to replace a finished artifact.

    Every process of a multi-host run calls this (Orbax saves collectively);
    process 0 writes the metadata and renames the finished directory into place.
    """
    import jax

    from pdiff_jax.runtime.checkpoint import save_pytree, write_json
    from pdiff_jax.runtime.distributed import barrier

    path = Path(path).absolute()
    if path.exists():
        raise CheckpointError(f"{path} already exists; refusing to overwrite finished work. "
                              "Delete it to recompute.")
    writer = jax.process_index() == 0
    # One name all processes agree on; leftovers of a killed run are removed first.
    tmp = path.parent / f".{path.name}.partial"
    if writer:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.partial*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    barrier(f"artifact-start:{path.name}")
    try:
        save_pytree(tmp / ARRAYS, arrays)
        if writer:
            write_json(tmp / META_JSON, meta)
            os.replace(tmp, path)
    except BaseException:
        if writer:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    barrier(f"artifact-done:{path.name}")
    return path


def load_artifact(path: str | os.PathLike, *, what: str = "artifact",
                  hint: str = "") -> tuple[Any, dict]:
    """``(arrays, meta)`` at ``path``, or a ``CheckpointError`` that says what to do."""
    from pdiff_jax.runtime.checkpoint import restore_pytree

    path = Path(path)
    if not exists(path):
        raise CheckpointError(f"no finished {what} at {path}" + (f": {hint}" if hint else ""))
    meta = read_meta(path, what=what)
    return restore_pytree(path / ARRAYS), meta


def read_meta(path: str | os.PathLike, *, what: str = "artifact") -> dict:
    """The ``meta.json`` of the artifact at ``path`` (a ``CheckpointError`` if unreadable)."""
    path = Path(path)
    try:
        with open(path / META_JSON) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what} metadata {path / META_JSON} is unreadable ({e}); "
                              f"delete {path} and rerun the stage") from e
