"""The whole p-diff run: collect -> autoencoder -> diffusion -> sample -> evaluate -> report.

Each stage reads the artifacts of the stages before it from the workdir and
writes its own; a stage whose finished artifact exists is skipped, so an
interrupted run picks up where it stopped and ``stages=[...]`` reruns a part.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import time
import zlib
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from pdiff_jax import artifacts
from pdiff_jax.checkpoint import read_json, write_json
from pdiff_jax.metrics_log import MetricsLog

STAGES = ("collect", "autoencoder", "diffusion", "sample", "evaluate", "report")


def stage_key(seed: int, name: str) -> jax.Array:
    """One key per stage, derived by name, so adding a stage changes no other stage's key."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))


class Run:
    """What the stages of one run share, loaded lazily from the workdir."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: Path):
        from pdiff_jax import sharding

        self.config = config
        self.workdir = workdir
        self.is_writer = jax.process_index() == 0
        self.log = MetricsLog(workdir, enabled=self.is_writer)
        self.mesh = sharding.make_mesh()
        self.timings: dict[str, float] = {}
        self._evaluator = None

    @functools.cached_property
    def dataset(self):
        from pdiff_jax.data import load_dataset
        from pdiff_jax.distributed import barrier

        d = self.config.data
        load = functools.partial(
            load_dataset, d.name, data_dir=d.data_dir or None, image_size=d.image_size or None,
            channels=d.channels or None, val_examples=d.val_examples,
            max_train=d.max_train or None, max_test=d.max_test or None, seed=self.config.seed)
        # Process 0 prepares the TFDS files first; the others read them once they exist.
        dataset = load() if self.is_writer else None
        barrier("dataset-prepared")
        return dataset if dataset is not None else load()

    @functools.cached_property
    def model_def(self):
        from pdiff_jax.models import get_model

        ds = self.dataset
        return get_model(self.config.model.name, num_classes=ds.num_classes,
                         input_shape=tuple(ds.x_train.shape[1:]),
                         **dict(self.config.model.kwargs))

    @functools.cached_property
    def zoo(self):
        from pdiff_jax.zoo import load_zoo

        return load_zoo(self.workdir / "zoo")

    @property
    def evaluator(self):
        if self._evaluator is None:
            from pdiff_jax.zoo import zoo_evaluator

            z = self.zoo
            self._evaluator = zoo_evaluator(self.model_def, z.base, z.spec, z.split_point,
                                            self.dataset, self.mesh, self.config.evaluate)
        return self._evaluator

    @property
    def generator_dir(self) -> Path:
        return self.workdir / "generator"


# ----------------------------------------------------------------------------- stages


def collect(run: Run) -> None:
    from pdiff_jax.zoo import collect_zoo, save_zoo

    if artifacts.exists(run.workdir / "zoo"):
        logging.info("collect: zoo exists, skipping")
        return
    zoo, run._evaluator = collect_zoo(
        run.config.zoo, dataset=run.dataset, model_def=run.model_def, workdir=run.workdir,
        seed=run.config.seed, mesh=run.mesh, metrics_fn=run.log.for_stage("collect"),
        eval_config=run.config.evaluate)
    save_zoo(run.workdir / "zoo", zoo)
    run.__dict__["zoo"] = zoo


def autoencoder(run: Run) -> None:
    from pdiff_jax.generator import train_autoencoder

    zoo = run.zoo
    train_autoencoder(zoo.vectors, config=run.config.generator, workdir=run.generator_dir,
                      key=stage_key(run.config.seed, "autoencoder"), mesh=run.mesh,
                      metrics_fn=run.log.for_stage("autoencoder"),
                      segments=[int(np.prod(s)) for s in zoo.spec.shapes])


def diffusion(run: Run) -> None:
    from pdiff_jax.generator import train_diffusion

    train_diffusion(config=run.config.generator, workdir=run.generator_dir,
                    key=stage_key(run.config.seed, "diffusion"), mesh=run.mesh,
                    metrics_fn=run.log.for_stage("diffusion"))


def sample(run: Run) -> None:
    from pdiff_jax.generator import load_generator

    path = run.workdir / "samples"
    if artifacts.exists(path):
        logging.info("sample: samples exist, skipping")
        return
    cfg = run.config.evaluate
    generator = load_generator(run.generator_dir)
    generator.check_compatible(run.zoo.spec.size, vectors=run.zoo.vectors)
    key = stage_key(run.config.seed, "sample")
    kw = dict(sampler=cfg.sampler, steps=cfg.sample_steps or None)
    latents = np.asarray(generator.sample_latents(key, cfg.num_generated, **kw))
    vectors = np.asarray(generator.decode(latents), np.float32)
    if not np.all(np.isfinite(vectors)):
        raise FloatingPointError("generated parameters contain NaN/inf: the generator diverged; "
                                 "retrain it with a lower learning rate")
    arrays = {"vectors": vectors, "latents": latents}
    if cfg.trajectories > 0:
        _, path_latents = generator.sample_latents(jax.random.fold_in(key, 1), cfg.trajectories,
                                                   return_trajectory=True, **kw)
        arrays["trajectory"] = decode_trajectory(generator, np.asarray(path_latents))
    artifacts.save_artifact(path, arrays, {"sampler": cfg.sampler, "steps": cfg.sample_steps,
                                           "n": int(cfg.num_generated)})


def decode_trajectory(generator, latents: np.ndarray, points: int = 41) -> np.ndarray:
    """Latent path ``f32[S + 1, n, ...]`` -> parameter path ``f32[n, points, D]`` (subsampled)."""
    steps = np.unique(np.linspace(0, len(latents) - 1, points).round().astype(int))
    picked = latents[steps]                                   # [T, n, ...]
    flat = picked.reshape(-1, *picked.shape[2:])
    decoded = np.asarray(generator.decode(flat), np.float32)  # [T * n, D]
    return decoded.reshape(len(steps), picked.shape[1], -1).transpose(1, 0, 2)


def evaluate(run: Run) -> None:
    from pdiff_jax.analysis import evaluate_groups

    path = run.workdir / "evaluation"
    if artifacts.exists(path):
        logging.info("evaluate: evaluation exists, skipping")
        return
    samples, _ = artifacts.load_artifact(run.workdir / "samples", what="samples",
                                         hint="run the 'sample' stage first")
    arrays, results = evaluate_groups(run, samples["vectors"],
                                      key=stage_key(run.config.seed, "evaluate"))
    artifacts.save_artifact(path, arrays, results)


def report(run: Run) -> None:
    from pdiff_jax.analysis import write_outputs

    write_outputs(run)


STAGE_FNS = {"collect": collect, "autoencoder": autoencoder, "diffusion": diffusion,
             "sample": sample, "evaluate": evaluate, "report": report}


def _check_workdir(workdir: Path, config: ml_collections.ConfigDict) -> None:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create workdir {workdir}: {e}; pass a writable --workdir") from e
    if not os.access(workdir, os.W_OK):
        raise PermissionError(f"workdir {workdir} is not writable; pass a writable --workdir")
    saved = workdir / "config.json"
    current = config.to_json_best_effort(sort_keys=True)
    if saved.exists():
        previous = read_json(saved)
        # A run that stopped before producing anything (bad input) holds nothing to protect:
        # the corrected command takes the workdir over.
        holds_work = any(p.name not in ("config.json", "metrics.jsonl")
                         and not p.name.startswith(".") for p in workdir.iterdir())
        if previous != json.loads(current) and holds_work:
            raise ValueError(
                f"{workdir} holds a run made with a different config (see {saved}). Its "
                "artifacts would not match this config: use a new --workdir, or delete that "
                "directory to start over.")


def run_pipeline(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                 stages=None) -> Run:
    """Run ``stages`` (default: all, in order) of p-diff for ``config`` in ``workdir``."""
    stages = list(stages or STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose from {list(STAGES)}")
    n = config.evaluate.num_generated
    if not isinstance(n, int) or n <= 0:  # checked now, not after hours of training
        raise ValueError(f"evaluate.num_generated must be a positive number of parameter sets "
                         f"to sample, got {n!r}; e.g. --config.evaluate.num_generated=100")
    workdir = Path(workdir)
    _check_workdir(workdir, config)
    run = Run(config, workdir)
    if run.is_writer:
        write_json(workdir / "config.json", json.loads(config.to_json_best_effort(sort_keys=True)))
    for name in STAGES:
        if name not in stages:
            continue
        start = time.perf_counter()
        logging.info("stage %s", name)
        try:
            STAGE_FNS[name](run)
            run.timings[name] = time.perf_counter() - start
            run.log.write("timing", 0, {f"{name}_s": run.timings[name]})
        except Exception as e:
            if _out_of_space(e):
                raise OSError(errno.ENOSPC, f"stage {name}: no space left on the device of "
                              f"{workdir} ({e}). Free some space, or pass another --workdir, and "
                              "run the same command again: finished stages are kept and "
                              "training resumes from its last checkpoint") from e
            raise
        logging.info("stage %s done in %.1f s", name, run.timings[name])
    return run


def _out_of_space(e: BaseException) -> bool:
    # Orbax/TensorStore report a full disk as their own exception types, hence the text too.
    return ((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
            or "No space left on device" in str(e))
