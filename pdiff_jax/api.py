"""The notebook API: open a finished run, sample ready-to-use parameters, measure them.

    import jax, pdiff_jax
    run = pdiff_jax.load("runs/default")
    out = run.sample(jax.random.key(0), n=100)
    out.vectors                      # f32[100, D]: the generated subsets
    out.variables                    # full variables, stacked on a leading axis of 100
    run.accuracy(out.vectors)        # f32[100] test accuracy in percent, in seconds
    x, y = run.dataset.x_test, run.dataset.y_test

Nothing here reads absl flags, so it works in a notebook as it is.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pdiff_jax import artifacts
from pdiff_jax.runtime.checkpoint import CheckpointError, read_json

TRAIN_HINT = ("train one with `python -m pdiff_jax.main --workdir {workdir}` (optionally "
              "--config configs/NAME.py), or pdiff_jax.run_pipeline(config, workdir)")


@dataclasses.dataclass
class Samples:
    vectors: np.ndarray   # f32[n, D]: generated subset vectors
    variables: Any        # full variables, every leaf stacked on a leading axis of n


class TrainedRun:
    """A finished p-diff run: its zoo, its trained generator and the architecture.

    ``encode``/``decode`` map subset vectors ``f32[n, D]`` to latents and back;
    ``sample`` draws new parameter sets; ``accuracy`` measures any parameter sets
    with the run's own evaluator (frozen head computed once, many sets per call).
    """

    def __init__(self, workdir: str | os.PathLike):
        from pdiff_jax.models import get_model
        from pdiff_jax.run import open_run
        from pdiff_jax.zoo.store import load_zoo

        self.workdir = Path(workdir)
        hint = TRAIN_HINT.format(workdir=self.workdir)
        if not artifacts.exists(artifacts.artifact_dir(self.workdir, artifacts.ZOO)):
            raise CheckpointError(f"no trained p-diff run in {self.workdir}: {hint}")
        self.run = open_run(self.workdir)   # its config, data and evaluator
        try:
            self.generator = self.run.generator()
        except CheckpointError as e:
            raise CheckpointError(f"{e}\nNo trained generator in {self.workdir}: {hint}") from e
        self.zoo = load_zoo(artifacts.artifact_dir(self.workdir, artifacts.ZOO))
        self.generator.check_compatible(self.zoo.spec.size, vectors=self.zoo.vectors)
        meta = self.zoo.meta
        self.model_def = get_model(meta["model"], num_classes=int(meta["num_classes"]),
                                   input_shape=tuple(meta["input_shape"]),
                                   **meta.get("model_kwargs", {}))

    @property
    def dataset(self):
        """The run's data set (``x_train``, ``y_train``, ``x_test``, ``y_test``, ...)."""
        return self.run.dataset

    def encode(self, vectors):
        return self.generator.encode(vectors)

    def decode(self, latents):
        return self.generator.decode(latents)

    def sample(self, key, n: int = 100, *, sampler: str | None = None,
               steps: int | None = None, condition=None,
               guidance_scale: float | None = None) -> Samples:
        """``n`` new parameter sets: subset vectors and full variables (a pure function of
        key and condition). The sampler settings are the run's own unless
        ``sampler``/``steps`` say. A conditional run (``generator.condition``) takes
        ``condition``: a level index (kind 'level') or an accuracy in percent (kind
        'value'); None samples unconditionally. ``guidance_scale``: None = the run's."""
        from pdiff_jax.params.subset import merge, unflatten_subset

        settings = self.run.sampler_settings(sampler=sampler, steps=steps)
        if guidance_scale is None:   # the run's own (generator.condition.guidance_scale)
            guidance_scale = self.run.guidance_scale
        vectors = np.asarray(self.generator.sample(key, n, settings, condition=condition,
                                                   guidance_scale=guidance_scale))
        spec, base = self.zoo.spec, self.zoo.base
        stacked = jax.vmap(lambda v: merge(base, unflatten_subset(v, spec)))(vectors)
        return Samples(vectors, jax.device_get(stacked))

    def recompute_batch_stats(self, vectors, images: int = 1000) -> np.ndarray:
        """``vectors`` ``f32[n, D]`` of an entire BatchNorm network with every running mean
        and variance recomputed from the first ``images`` training images, parameters
        untouched (``pdiff_jax.evaluation.batch_stats``: generated statistics are the weak
        part of generated BatchNorm networks)."""
        from pdiff_jax.evaluation.batch_stats import recompute_in_vectors

        return recompute_in_vectors(self.model_def, self.zoo.base, self.zoo.spec, vectors,
                                    self.dataset.x_train[:images])

    def accuracy(self, vectors, split: str = "test") -> np.ndarray:
        """Accuracy in percent ``f32[n]`` of parameter sets ``f32[n, D]`` on ``split``
        ('test', or 'train': the examples the run selects its best model on), measured as
        the run's evaluate stage measures (``evaluate.recompute_batch_stats`` included)."""
        return self.run.evaluate(np.asarray(vectors, np.float32), split)[0]


def load(workdir: str | os.PathLike = "runs/default") -> TrainedRun:
    """The finished run in ``workdir`` (from ``python -m pdiff_jax.main``)."""
    return TrainedRun(workdir)


def sample(key, n: int = 100, *, workdir: str | os.PathLike = "runs/default",
           sampler: str | None = None, steps: int | None = None, condition=None,
           guidance_scale: float | None = None) -> Samples:
    """``n`` generated parameter sets from the run in ``workdir`` (see :class:`Samples`);
    ``condition``/``guidance_scale`` as in :meth:`TrainedRun.sample`."""
    return load(workdir).sample(key, n, sampler=sampler, steps=steps, condition=condition,
                                guidance_scale=guidance_scale)


def evaluate(workdir: str | os.PathLike = "runs/default") -> dict:
    """Run (or reuse) the sample, evaluation and report stages of ``workdir``.

    Returns the contents of ``results.json``, with every stage's time.
    """
    from pdiff_jax.pipeline import run_pipeline
    from pdiff_jax.run import open_run

    workdir = Path(workdir)
    config = open_run(workdir).config
    run_pipeline(config, workdir, stages=["sample", "evaluate", "report"])
    return read_json(workdir / artifacts.RESULTS_JSON)
