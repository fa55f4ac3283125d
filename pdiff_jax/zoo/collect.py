"""Stage 1, collect: train the parameter sets the generator learns from.

Two modes, as in the paper:
  * ``subset``: train one network, then freeze everything but a subset (by
    default the architecture's last two normalization layers) and keep
    training the subset, saving K snapshots of it. The frozen head is run
    once: the activations entering the first layer that touches the subset
    are cached, and only the tail is trained.
  * ``seed``: K whole networks trained from different initialisations and
    data orders; the subset is every variable. With ``snapshot_epochs`` (e.g.
    (1, 2, 4, 8)) each seed contributes one member per listed epoch count: a zoo
    with an accuracy spread, for accuracy-conditioned generation.

``collect_vectors`` returns the base variables, the stacked vectors
``f32[K, D]``, the ``ParamSpec`` and the split point; the pipeline measures
their accuracies and stores them as a ``Zoo``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from pdiff_jax.config.choices import ZOO_MODES as MODES
from pdiff_jax.evaluation.evaluator import compute_tail_inputs
from pdiff_jax.params.subset import ParamSpec, flatten_subset, merge, unflatten_subset
from pdiff_jax.runtime import dispatch, sharding
from pdiff_jax.runtime.train_loop import resumable_loop
from pdiff_jax.zoo import training
from pdiff_jax.zoo.settings import ZooSettings


def selector_of(selector, mode: str, model_def):
    """The configured selector, or the architecture's default subset."""
    if not selector:
        return model_def if mode == "subset" else ".*"
    return selector


def collect_vectors(dataset, model_def, settings: ZooSettings, *, seed: int, checkpoints: Path,
                    mesh=None,
                    metrics_fn=None) -> tuple[dict, np.ndarray, ParamSpec, str | None]:
    """Build the zoo's parameter sets as ``settings`` (the ``zoo`` config section) say.

    Returns ``(base variables, vectors f32[K, D], spec, split point)``; resumable
    training state goes under ``checkpoints``. In seed mode with ``snapshot_epochs``
    K = num_models * len(snapshot_epochs), seed-major (member i * E + j is seed i
    after snapshot_epochs[j] epochs; ``epochs`` is then unused).
    """
    s = settings
    mesh = mesh or sharding.make_mesh()
    recipe = s.recipe()
    throughput = dict(s.throughput(), data_stats=(dataset.mean, dataset.std))
    mode, align = s.mode, s.align
    selector = selector_of(s.selector, mode, model_def)
    if mode == "subset":
        if align != "none":
            raise ValueError(f"zoo.align={align!r} applies to seed zoos only (zoo.mode='seed'); "
                             "a subset zoo's snapshots share one network's units")
        out = _subset_zoo(dataset, model_def, selector, s.init_from, recipe, throughput,
                          seed=seed, num_models=s.num_models, save_every=s.save_every,
                          subset_optimizer=s.subset_optimizer, subset_lr=s.subset_lr,
                          subset_batch_size=s.subset_batch_size,
                          checkpoint_every=s.checkpoint_every, checkpoints=checkpoints,
                          mesh=mesh, metrics_fn=metrics_fn)
    elif mode == "seed":
        out = _seed_zoo(dataset, model_def, selector, recipe, throughput, seed=seed,
                        num_models=s.num_models,
                        models_per_step=s.models_per_step, stack=s.stack,
                        checkpoints=checkpoints, mesh=mesh, metrics_fn=metrics_fn,
                        snapshot_epochs=tuple(s.snapshot_epochs))
        if align != "none":   # permute hidden units to member 0's: same functions, one mode
            from pdiff_jax.zoo.alignment import align_zoo

            base, vectors, spec, split = out
            out = (base, align_zoo(vectors, spec, model_def, method=align), spec, split)
    else:
        raise ValueError(f"zoo.mode must be one of {MODES}, not {mode!r}")
    if not np.all(np.isfinite(out[1])):
        raise FloatingPointError("the zoo contains NaN or inf parameters: training diverged; "
                                 "lower zoo.lr / zoo.subset_lr")
    return out


def _initial_variables(init_from: str, model_def, seed: int) -> dict:
    if init_from:
        from pdiff_jax.models.convert import load_torch_weights
        logging.info("zoo: starting from converted weights %s", init_from)
        return load_torch_weights(init_from, model_def.name, model_def=model_def)
    return jax.device_get(model_def.init(jax.random.key(seed)))


def _subset_zoo(dataset, model_def, selector, init_from, recipe, throughput, *, seed,
                num_models,
                save_every, subset_optimizer, subset_lr, subset_batch_size, checkpoint_every,
                checkpoints, mesh, metrics_fn):
    variables = _initial_variables(init_from, model_def, seed)
    # Before training: a selector that matches nothing fails at once, not after the epochs.
    spec = ParamSpec.from_variables(variables, selector)
    if recipe["epochs"] > 0:
        variables = training.train_classifier(
            model_def, variables, dataset.x_train, dataset.y_train, seed=seed, mesh=mesh,
            checkpoint_dir=checkpoints / "base", metrics_fn=metrics_fn, desc="base", **recipe,
            **throughput)
    split = model_def.split_point_for(spec.names)
    logging.info("zoo: subset of %d numbers in %d tensors; tail starts at %s", spec.size,
                 len(spec.names), split)
    tail_inputs = compute_tail_inputs(model_def, variables, dataset.x_train, split, mesh=mesh,
                                      desc="frozen head")
    vectors = training.train_subset_snapshots(
        model_def, variables, spec, split, tail_inputs, dataset.y_train,
        num_snapshots=num_models, save_every=save_every, optimizer=subset_optimizer,
        lr=subset_lr, batch_size=subset_batch_size, momentum=recipe["momentum"], seed=seed,
        mesh=mesh, checkpoint_dir=checkpoints / "subset", checkpoint_every=checkpoint_every,
        metrics_fn=metrics_fn)
    return variables, vectors, spec, split


def seed_of_member(seed: int, i: int) -> int:
    """The seed of seed-zoo member ``i``: its initialisation and data order."""
    return seed * 100003 + i


def _seed_zoo(dataset, model_def, selector, recipe, throughput, *, seed, num_models,
              models_per_step, stack, checkpoints, mesh, metrics_fn, snapshot_epochs=()):
    """K networks from seeds ``seed_of_member(seed, i)``; the subset covers all variables.
    With ``snapshot_epochs``, each seed once per epoch count (seed-major)."""
    first = jax.device_get(model_def.init(jax.random.key(seed)))
    spec = ParamSpec.from_variables(first, selector)
    group = max(1, int(models_per_step))
    K = int(num_models)
    # Each epoch count is its own ordinary training run; with a constant schedule the
    # shorter runs are exactly the longer run's earlier epochs (batches depend on
    # (seed, epoch) only), so they are that seed's epoch checkpoints.
    epoch_counts = tuple(int(e) for e in snapshot_epochs) or (recipe["epochs"],)
    E = len(epoch_counts)

    def train_group(state, g):
        ids = list(range(g * group, min((g + 1) * group, K)))
        seeds = [seed_of_member(seed, i) for i in ids]
        for j, epochs in enumerate(epoch_counts):
            run = dict(recipe, epochs=epochs)
            if stack != "vmap" and len(ids) > 1:   # 'unrolled' or 'grouped' (convnets)
                from pdiff_jax.zoo.stacked_training import train_networks_stacked

                trained = train_networks_stacked(model_def, seeds, dataset.x_train,
                                                 dataset.y_train, mesh=mesh,
                                                 formulation=stack, **run)
            else:
                trained = training.train_classifiers_batched(
                    model_def, seeds, dataset.x_train, dataset.y_train, mesh=mesh,
                    metrics_fn=metrics_fn, **run, **throughput)
            for i, variables in zip(ids, trained, strict=True):
                state["vectors"][i * E + j] = np.asarray(flatten_subset(variables, spec))
        return state, 0.0   # each model's training checks its own losses

    # The checkpoint holds the whole zoo (K x D: 2.2 GB for 50 ResNet-18s); on accelerators,
    # where a group trains in seconds, it is saved at most every 30 s (dispatch.py).
    state = resumable_loop(train_group, {"vectors": np.zeros((K * E, spec.size), np.float32)},
                           total=-(-K // group), desc="seed zoo", unit="group",
                           hint=training.LR_HINT, ckpt_dir=checkpoints / "seed",
                           restore=lambda r: {"vectors": np.array(r["vectors"])},
                           min_checkpoint_seconds=dispatch.min_checkpoint_seconds())
    vectors = state["vectors"]
    base = merge(first, unflatten_subset(jnp.asarray(vectors[0]), spec))
    return jax.device_get(base), vectors, spec, None
