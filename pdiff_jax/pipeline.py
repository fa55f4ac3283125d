"""The whole p-diff run as one table of stages: collect -> autoencoder -> diffusion ->
sample -> evaluate -> report.

This module and ``run.py`` (the :class:`~pdiff_jax.run.Run` the stages share) are the
only ones, with ``main`` and the config files, that read the ConfigDict. Every stage is
one row of ``STAGES``:

- its **artifact** (``artifacts.py`` names it): the stage is done, and skipped,
  when the artifact exists; the report has none and is rendered every time;
- its **config sections**: what it reads, so a changed config is checked
  against exactly the finished artifacts it would invalidate;
- its **key**: ``stage_key(seed, name)``, so adding a stage changes no other key;
- its **adapter** below: loads the artifacts it needs, calls a library function
  with plain keyword arguments from its config sections, and returns
  ``(arrays, meta)`` that the driver stores atomically, with the stage's time.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from pdiff_jax import artifacts
from pdiff_jax.config import workdir as workdir_config
from pdiff_jax.config.check import validate_config
from pdiff_jax.errors import UsageError
from pdiff_jax.run import Run, open_run  # noqa: F401  (open_run: the public way in)
from pdiff_jax.runtime import dispatch
from pdiff_jax.runtime.checkpoint import write_json
from pdiff_jax.runtime.metrics_log import MetricsLog


def stage_key(seed: int, name: str) -> jax.Array:
    """One key per stage, derived by name, so adding a stage changes no other stage's key."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))


# ----------------------------------------------------------------------------- adapters


def _collect(run: Run, key, log):
    from pdiff_jax.zoo import estimate
    from pdiff_jax.zoo.collect import collect_vectors
    from pdiff_jax.zoo.settings import ZooSettings
    from pdiff_jax.zoo.store import Zoo, dataset_identity

    cfg, settings, imported = run.config, ZooSettings.from_section(run.config.zoo), None
    if settings.source:   # bring your own zoo (zoo/sources/): imported, not trained
        from pdiff_jax.zoo.sources import import_zoo

        imported = import_zoo(settings, run.model_def, run.dataset, seed=cfg.seed)
        base, vectors, spec, split = imported.base, imported.vectors, imported.spec, None
    else:
        # Said before the training starts, from the data set this stage loads anyway.
        estimate.announce(run.dataset, run.model_def, settings, seed=cfg.seed, mesh=run.mesh)
        base, vectors, spec, split = collect_vectors(
            run.dataset, run.model_def, settings, seed=cfg.seed, mesh=run.mesh,
            metrics_fn=log, checkpoints=artifacts.checkpoint_dir(run.workdir, "collect"))
    evaluator = run.evaluator(base, spec, split)
    train_acc, _ = evaluator.evaluate(vectors, "train")
    test_acc, _ = evaluator.evaluate(vectors, "test")
    logging.info("zoo: K=%d D=%d, test accuracy %.2f..%.2f%% (median %.2f%%)", len(vectors),
                 spec.size, test_acc.min(), test_acc.max(), np.median(test_acc))
    if imported is not None:   # what the source says each network scores, before any training
        imported.check_accuracies(test_acc, tolerance=settings.source_tolerance,
                                  n_test=len(run.dataset.y_test), subset=cfg.data.max_test > 0)
    md = run.model_def
    zoo = Zoo(base, vectors, spec, split, train_acc, test_acc, dict(
        mode=cfg.zoo.mode, model=md.name, model_kwargs=cfg.model.kwargs.to_dict(),
        dataset=dataset_identity(run.dataset), input_shape=list(md.input_shape),
        num_classes=md.num_classes, config=cfg.zoo.to_dict(),
        **({"source": imported.meta} if imported is not None else {})))
    return zoo


def _autoencoder(run: Run, key, log):
    from pdiff_jax.generator import TrainedGenerator, train_autoencoder
    from pdiff_jax.generator.diagnostics import reconstruction_accuracy, reconstruction_gap

    zoo, gen = run.zoo, run.config.generator
    behaviour, behaviour_inputs = _behaviour(run)
    arrays, meta = train_autoencoder(
        zoo.vectors, key=key, segments=zoo.segments, normalization=gen.normalization,
        model=gen.autoencoder.model, train=gen.autoencoder.train, behaviour=behaviour,
        behaviour_inputs=behaviour_inputs,
        mesh=dispatch.generator_mesh(run.mesh),
        checkpoint_dir=artifacts.checkpoint_dir(run.workdir, "autoencoder"), metrics_fn=log)
    # The zoo members through the AE: no sampler can do better than these copies. Measured
    # as the evaluate stage measures samples (recomputed BatchNorm statistics included), and
    # compared with the zoo measured alike: its stored accuracies used its own statistics.
    meta.update(reconstruction_accuracy(TrainedGenerator(arrays, meta, zoo=zoo.vectors).decode,
                                        arrays["latents"], lambda v: run.evaluate(v, "test")[0]))
    zoo_acc = run.evaluate(zoo.vectors, "test")[0] if run.recomputes_batch_stats else zoo.test_acc
    if (warning := reconstruction_gap(meta, zoo_acc)) is not None:
        logging.warning(warning)
        meta["warning"] = warning
    return arrays, meta


def _behaviour(run: Run):
    """The autoencoder's behavioural term (``generator.autoencoder.behaviour``), or Nones."""
    from pdiff_jax.evaluation.evaluator import compute_tail_inputs
    from pdiff_jax.generator.behaviour import Behaviour, BehaviourSettings
    from pdiff_jax.zoo import training

    settings = BehaviourSettings(**run.config.generator.autoencoder.behaviour.to_dict())
    if settings.weight <= 0:
        return None, None
    zoo = run.zoo
    inputs = compute_tail_inputs(run.model_def, zoo.base, run.dataset.x_train[:settings.images],
                                 zoo.split_point, mesh=run.mesh)
    batch_statistics = training.batch_norm_mode(zoo.spec, zoo.split_point) == "train"
    return (Behaviour(run.model_def, zoo.spec, zoo.split_point, settings,
                      batch_statistics=batch_statistics),
            (zoo.base, inputs, run.dataset.y_train[:settings.images]))


def _diffusion(run: Run, key, log):
    from pdiff_jax.generator import train_diffusion

    ae_arrays, ae_meta = artifacts.load_artifact(
        artifacts.artifact_dir(run.workdir, artifacts.AUTOENCODER), what="autoencoder")
    gen = run.config.generator
    cond = gen.condition
    accuracies = None
    if cond.kind != "none":   # each member's accuracy labels its condition
        accuracies = run.zoo.test_acc if cond.on == "test" else run.zoo.train_acc
    return train_diffusion(
        ae_arrays["latents"], key=key, process=gen.diffusion.process,
        model=gen.diffusion.model, train=gen.diffusion.train, accuracies=accuracies,
        condition={k: v for k, v in cond.to_dict().items() if k != "guidance_scale"},
        ae_fingerprint=ae_meta["fingerprint"], mesh=dispatch.generator_mesh(run.mesh),
        checkpoint_dir=artifacts.checkpoint_dir(run.workdir, "diffusion"), metrics_fn=log,
        latent_mix=gen.diffusion.get("latent_mix", 0.0))


def _sample(run: Run, key, log):
    from pdiff_jax.generator.trained import sample_and_decode

    generator, zoo = run.generator(), run.zoo
    generator.check_compatible(zoo.spec.size, vectors=zoo.vectors)
    return sample_and_decode(generator, key, run.sampler_settings(),
                             n=run.config.evaluate.num_generated,
                             trajectories=run.config.evaluate.trajectories,
                             guidance_scale=run.config.generator.condition.guidance_scale)


def _evaluate(run: Run, key, log):
    from pdiff_jax.evaluation.finetune import finetuned_neighbours
    from pdiff_jax.evaluation.groups import evaluate_groups

    e, z = run.config.evaluate, run.config.zoo
    zoo = run.zoo
    evaluator = run.group_evaluator
    samples, _ = artifacts.load_artifact(artifacts.artifact_dir(run.workdir, artifacts.SAMPLES),
                                         what="samples")
    finetune = None
    if e.finetune_pairs > 0:
        finetune = functools.partial(
            finetuned_neighbours, evaluator=evaluator, zoo=zoo, model_def=run.model_def,
            pairs=e.finetune_pairs, steps=e.finetune_steps, optimizer=z.subset_optimizer,
            lr=z.subset_lr, batch_size=z.subset_batch_size, momentum=z.momentum, mesh=run.mesh)
    arrays, results = evaluate_groups(
        evaluator, zoo, samples["vectors"], key=key, num_baseline=e.num_baseline,
        noise_amplitudes=e.noise_amplitudes, average_k=e.average_k, finetune=finetune)
    images = getattr(evaluator, "images", None)   # a RecomputedStatsEvaluator's
    results["meta"]["batch_stats"] = ("as stored" if images is None else
                                      f"recomputed from {len(images)} training images")
    if "condition_level" in samples:   # a conditional run: per requested level
        from pdiff_jax.evaluation.conditional import evaluate_levels

        _, sample_meta = artifacts.load_artifact(
            artifacts.artifact_dir(run.workdir, artifacts.SAMPLES), what="samples")
        results["conditional"] = evaluate_levels(
            evaluator, zoo, arrays["pdiff"], samples["condition_level"],
            sample_meta["condition"], key=jax.random.fold_in(key, 7),
            noise_amplitude=max(e.noise_amplitudes, default=0.1), n_noise=e.num_baseline)
    if e.frontier.enabled:
        results["frontier"] = frontier_of_run(run, jax.random.fold_in(key, FRONTIER_SALT),
                                              arrays["original"])
    return arrays, results


# The frontier's key within the evaluate stage's (benchmarks/frontier_points.py draws more
# points of a finished run with it).
FRONTIER_SALT = 11


def frontier_of_run(run: Run, key, zoo_arrays) -> dict:
    """The accuracy-novelty frontier of every trivial family and of p-diff: the evaluate
    stage's, and benchmarks/frontier_points.py's for more knobs of a finished run."""
    from pdiff_jax.evaluation.finetune import finetuned_members
    from pdiff_jax.evaluation.frontier import FrontierSettings, compute_frontier
    from pdiff_jax.evaluation.groups import measure, unpack_group

    e, z, zoo, evaluator = run.config.evaluate, run.config.zoo, run.zoo, run.group_evaluator
    generator, sampler = run.generator(), run.sampler_settings()
    settings = FrontierSettings.from_section(e.frontier)
    cond = generator.condition

    def sample_pdiff(knob, k):
        if settings.pdiff_knob in ("temperature", "latent_mix"):
            vectors = generator.sample(k, e.num_generated,
                                       dataclasses.replace(sampler, **{settings.pdiff_knob: knob}))
        else:   # guidance toward the zoo's top accuracy: the top level, or the best member's
            top = cond.num_levels - 1 if cond.kind == "level" else float(
                np.max(zoo.test_acc if cond.on == "test" else zoo.train_acc))
            vectors = generator.sample(k, e.num_generated, sampler, condition=top,
                                       guidance_scale=knob)
        return np.asarray(vectors, np.float32)

    finetune = functools.partial(
        finetuned_members, evaluator=evaluator, zoo=zoo, model_def=run.model_def,
        optimizer=z.subset_optimizer, lr=z.subset_lr, batch_size=z.subset_batch_size,
        momentum=z.momentum, mesh=run.mesh)
    return compute_frontier(
        settings, key=key, zoo=zoo,
        zoo_measured=unpack_group(zoo_arrays, zoo.vectors, len(evaluator.inputs["test"][1])),
        measure=functools.partial(measure, evaluator), sample_pdiff=sample_pdiff,
        finetune=finetune, n=e.num_generated)


def _report(run: Run, key, log):
    from pdiff_jax.evaluation.render import render_report

    render_report(run.workdir, config=run.config.to_dict(), key=key,
                  timings=stage_seconds(run.workdir), tsne=run.config.evaluate.tsne,
                  write=jax.process_index() == 0)


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    artifact: str | None               # None: rendered every time, never skipped
    sections: tuple[str, ...]          # config sections it reads (beyond earlier stages)
    adapter: Callable

    def finished(self, workdir: Path) -> bool:
        """Whether ``workdir`` holds this stage's finished artifact."""
        return self.artifact is not None and artifacts.exists(
            artifacts.artifact_dir(workdir, self.artifact))


STAGES = (
    Stage("collect", artifacts.ZOO, ("seed", "data", "model", "zoo", "evaluate.train_examples"),
          _collect),
    Stage("autoencoder", artifacts.AUTOENCODER,
          ("generator.normalization", "generator.autoencoder"), _autoencoder),
    Stage("diffusion", artifacts.DIFFUSION,
          ("generator.diffusion", *(f"generator.condition.{k}" for k in
                                    ("kind", "levels", "on", "dropout"))), _diffusion),
    Stage("sample", artifacts.SAMPLES,
          ("generator.sampling", "generator.condition.guidance_scale", "evaluate.num_generated",
           "evaluate.trajectories"), _sample),
    Stage("evaluate", artifacts.EVALUATION,
          tuple(f"evaluate.{k}" for k in ("batch_size", "models_per_call", "vectorize",
                                          "num_baseline", "noise_amplitudes", "average_k",
                                          "finetune_pairs", "finetune_steps",
                                          "recompute_batch_stats", "frontier")), _evaluate),
    Stage("report", None, ("evaluate.tsne",), _report),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def stage_seconds(workdir: Path) -> dict[str, float]:
    """``{stage: seconds}`` of every finished stage, as its artifact recorded them."""
    return {s.name: artifacts.read_meta(artifacts.artifact_dir(workdir, s.artifact))["seconds"]
            for s in STAGES if s.finished(workdir)}


def _save(stage: Stage, workdir: Path, out, seconds: float) -> None:
    from pdiff_jax.zoo.store import Zoo, save_zoo

    path = artifacts.artifact_dir(workdir, stage.artifact)
    if isinstance(out, Zoo):
        save_zoo(path, out, seconds=seconds)
    else:
        arrays, meta = out
        artifacts.save_artifact(path, arrays, dict(meta, seconds=seconds))


def _run_stage(stage: Stage, run: Run, log: MetricsLog) -> None:
    start = time.perf_counter()
    logging.info("stage %s", stage.name)
    out = stage.adapter(run, stage_key(run.config.seed, stage.name), log.for_stage(stage.name))
    seconds = round(time.perf_counter() - start, 2)
    if stage.artifact is not None:
        _save(stage, run.workdir, out, seconds)
    log.write("timing", 0, {f"{stage.name}_s": seconds})
    logging.info("stage %s done in %.1f s", stage.name, seconds)


def run_pipeline(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                 stages=None) -> Path:
    """Run ``stages`` (default: all, in order) of p-diff for ``config`` in ``workdir``.

    A stage whose artifact exists is skipped. Returns the workdir.
    """
    requested = list(stages or STAGE_NAMES)
    unknown = [s for s in requested if s not in STAGE_NAMES]
    if unknown:
        raise UsageError(f"unknown stages {unknown}; choose from {','.join(STAGE_NAMES)}")
    workdir = Path(workdir)
    # The whole config, the data and the workdir are checked now, not after hours of training.
    validate_config(config, workdir=workdir)
    todo = [s for s in STAGES if s.name in requested and not s.finished(workdir)]
    workdir_config.check_prerequisites(workdir, todo, STAGES)
    workdir_config.adopt(workdir, config, STAGES)
    if jax.process_index() == 0:
        write_json(workdir / artifacts.CONFIG_JSON,
                   json.loads(config.to_json_best_effort(sort_keys=True)))
    run, log = Run(config, workdir), MetricsLog(workdir, enabled=jax.process_index() == 0)
    for stage in STAGES:
        if stage.name not in requested:
            continue
        if stage not in todo:
            logging.info("stage %s: %s exists, skipping", stage.name, stage.artifact)
            continue
        try:
            _run_stage(stage, run, log)
        except Exception as e:
            if _out_of_space(e):
                raise OSError(errno.ENOSPC, f"stage {stage.name}: no space left on the device "
                              f"of {workdir} ({e}). Free some space, or pass another "
                              "--workdir, and run the same command again: finished stages "
                              "are kept and training resumes from its last checkpoint") from e
            raise
    return workdir


def _out_of_space(e: BaseException) -> bool:
    # Orbax/TensorStore report a full disk as their own exception types, hence the text too.
    return ((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
            or "No space left on device" in str(e))

