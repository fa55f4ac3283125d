"""One run, finished or not, as the stages, the notebook API and scripts see it.

    from pdiff_jax.run import open_run
    run = open_run("runs/mlp3")
    run.zoo.vectors                      # f32[K, D], once the collect stage is done
    acc, wrong = run.evaluate(vectors)   # as the evaluate stage measures
    run.generator()                      # the trained generator

A :class:`Run` builds what it is asked for on first use (loading MNIST or compiling an
evaluator once per process, not once per stage) and is read-only: its config is the
one in the workdir's config.json (or the one the pipeline was started with).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import ml_collections

from pdiff_jax import artifacts
from pdiff_jax.errors import CheckpointError


class Run:
    """The config, data set, architecture, zoo, generator and evaluators of one run."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | os.PathLike):
        from pdiff_jax.runtime import sharding

        self.config = config
        self.workdir = Path(workdir)
        self.mesh = sharding.make_mesh()
        self._evaluators: dict[tuple, object] = {}

    @functools.cached_property
    def dataset(self):
        """The run's data set (``x_train``, ``y_train``, ``x_test``, ``y_test``, ...)."""
        from pdiff_jax.data import load_dataset
        from pdiff_jax.runtime.distributed import barrier

        d, seed = self.config.data, self.config.seed
        load = functools.partial(
            load_dataset, d.name, data_dir=d.data_dir or None, image_size=d.image_size or None,
            channels=d.channels or None, val_examples=d.val_examples,
            max_train=d.max_train or None, max_test=d.max_test or None, seed=seed)
        # Process 0 prepares the TFDS files first; the others read them once they exist.
        dataset = load() if jax.process_index() == 0 else None
        barrier("dataset-prepared")
        return dataset if dataset is not None else load()

    @functools.cached_property
    def model_def(self):
        """The classifier architecture (``models.ModelDef``) built for the run's data."""
        from pdiff_jax.models import get_model

        return get_model(self.config.model.name, num_classes=self.dataset.num_classes,
                         input_shape=tuple(self.dataset.x_train.shape[1:]),
                         **dict(self.config.model.kwargs))

    @functools.cached_property
    def zoo(self):
        """The stored zoo, read once (after the collect stage saved it)."""
        from pdiff_jax.zoo.store import load_zoo

        return load_zoo(artifacts.artifact_dir(self.workdir, artifacts.ZOO))

    def generator(self, *, require_diffusion: bool = True):
        """The trained generator (``generator.TrainedGenerator``) of this run."""
        from pdiff_jax.generator import load_generator

        # A generator with an implicit principal basis reads the zoo: this run's, loaded once.
        return load_generator(self.workdir, require_diffusion=require_diffusion,
                              zoo=lambda: self.zoo.vectors)

    def sampler_settings(self, **overrides):
        """The run's ``generator.sampling`` settings, with any non-None ``overrides``."""
        from pdiff_jax.generator import SamplerSettings

        kw = self.config.generator.sampling.to_dict()
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return SamplerSettings(**kw)

    @property
    def guidance_scale(self) -> float | None:
        """The run's classifier-free guidance scale (None for an older, unconditional run)."""
        return self.config.generator.get("condition", {}).get("guidance_scale")

    def evaluator(self, base, spec, split_point):
        """The compiled evaluator of parameter sets of ``spec`` on the run's data (one per
        spec and split point, built once)."""
        from pdiff_jax.evaluation.evaluator import make_evaluator

        key = (spec, split_point)   # ParamSpec is hashable
        if key not in self._evaluators:
            e = self.config.evaluate
            self._evaluators[key] = make_evaluator(
                self.model_def, base, spec, split_point, self.dataset, mesh=self.mesh,
                train_examples=e.train_examples, batch_size=e.batch_size,
                models_per_call=e.models_per_call, vectorize=e.vectorize)
        return self._evaluators[key]

    @property
    def recomputes_batch_stats(self) -> bool:
        """Whether the evaluate stage recomputes each network's BatchNorm statistics."""
        return bool(self.config.evaluate.get("recompute_batch_stats", 0))

    @functools.cached_property
    def group_evaluator(self):
        """What the evaluate stage measures the zoo's groups with: the zoo's evaluator, with
        every parameter set's BatchNorm statistics recomputed first when
        ``evaluate.recompute_batch_stats`` asks for it."""
        zoo = self.zoo
        evaluator = self.evaluator(zoo.base, zoo.spec, zoo.split_point)
        if not self.recomputes_batch_stats:
            return evaluator
        from pdiff_jax.evaluation.batch_stats import RecomputedStatsEvaluator

        images = self.dataset.x_train[:self.config.evaluate.recompute_batch_stats]
        return RecomputedStatsEvaluator(evaluator, self.model_def, zoo.base, zoo.spec, images)

    def evaluate(self, vectors, split: str = "test"):
        """``(accuracy f32[n] in percent, wrong-prediction masks)`` of parameter sets
        ``f32[n, D]`` of the zoo's subset, measured as the evaluate stage measures."""
        return self.group_evaluator.evaluate(vectors, split)


def open_run(workdir: str | os.PathLike) -> Run:
    """The finished or unfinished run in ``workdir``, from its config.json."""
    from pdiff_jax.runtime.checkpoint import read_json

    saved = Path(workdir) / artifacts.CONFIG_JSON
    if not saved.exists():
        raise CheckpointError(f"no p-diff run in {workdir} (no {saved.name}): run "
                              f"`python -m pdiff_jax.main --workdir {workdir}` first")
    return Run(ml_collections.ConfigDict(read_json(saved)), Path(workdir))
