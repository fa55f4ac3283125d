"""Stage 1, the zoo: the parameter sets the generator learns from.

Two modes, as in the paper:
  * ``subset``: train one network, then freeze everything but a subset (by
    default the architecture's last two normalization layers) and keep
    training the subset, saving K snapshots of it. The frozen head is run
    once: the activations entering the first layer that touches the subset
    are cached, and only the tail is trained. BatchNorm running statistics
    stay frozen in this phase (eval-mode forward), so the objective the
    snapshots are trained on is exactly the one they are evaluated on.
  * ``seed``: K whole networks trained from different initialisations and
    data orders; the subset is every variable.

The artifact (``workdir/zoo``) holds the base variables, the stacked subset
vectors ``f32[K, D]``, per-model accuracies, the ``ParamSpec`` and the data
set's identity. It is written atomically; a finished zoo is never recomputed.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm.auto import tqdm

from pdiff_jax import artifacts, sharding, training
from pdiff_jax.alignment import align_zoo
from pdiff_jax.checkpoint import TrainCheckpoints
from pdiff_jax.evaluator import ManyModelEvaluator, compute_tail_inputs
from pdiff_jax.stacked_training import train_networks_stacked
from pdiff_jax.subset import ParamSpec, flatten_subset, merge, unflatten_subset


@dataclasses.dataclass
class Zoo:
    base: dict             # full variables the subset vectors are merged into
    vectors: np.ndarray    # f32[K, D]
    spec: ParamSpec
    split_point: str | None
    train_acc: np.ndarray  # f32[K], percent
    test_acc: np.ndarray   # f32[K], percent
    meta: dict             # mode, model, data set identity, config

    @property
    def num_models(self) -> int:
        return int(self.vectors.shape[0])


def save_zoo(path: Path, zoo: Zoo) -> None:
    arrays = {"base": zoo.base, "vectors": zoo.vectors, "train_acc": zoo.train_acc,
              "test_acc": zoo.test_acc}
    meta = dict(zoo.meta, spec=zoo.spec.to_json(), split_point=zoo.split_point)
    artifacts.save_artifact(path, arrays, meta)


def load_zoo(path: Path) -> Zoo:
    arrays, meta = artifacts.load_artifact(path, what="zoo",
                                           hint="run the 'collect' stage to build it")
    spec = ParamSpec.from_json(meta.pop("spec"))
    split_point = meta.pop("split_point")
    return Zoo(arrays["base"], arrays["vectors"], spec, split_point, arrays["train_acc"],
               arrays["test_acc"], meta)


def selector_of(zoo_config, model_def):
    """The configured selector, or the architecture's default subset."""
    sel = zoo_config.selector
    if not sel:
        return model_def if zoo_config.mode == "subset" else ".*"
    return sel


def collect_zoo(zoo_config, *, dataset, model_def, workdir: Path, seed: int, mesh=None,
                metrics_fn=None, eval_config=None) -> tuple[Zoo, ManyModelEvaluator]:
    """Build the zoo described by ``zoo_config`` (see ``default_config.zoo_defaults``).

    Returns the zoo and the evaluator that measured it (reusable by later stages).
    """
    mesh = mesh or sharding.make_mesh()
    if zoo_config.mode == "subset":
        base, vectors, spec, split = _subset_zoo(zoo_config, dataset, model_def, workdir, seed,
                                                 mesh, metrics_fn)
    elif zoo_config.mode == "seed":
        base, vectors, spec, split = _seed_zoo(zoo_config, dataset, model_def, workdir, seed,
                                               mesh, metrics_fn)
    else:
        raise ValueError(f"zoo.mode must be 'subset' or 'seed', not {zoo_config.mode!r}")
    if not np.all(np.isfinite(vectors)):
        raise FloatingPointError("the zoo contains NaN or inf parameters: training diverged; "
                                 "lower zoo.lr / zoo.subset_lr")
    evaluator = zoo_evaluator(model_def, base, spec, split, dataset, mesh, eval_config)
    train_acc, _ = evaluator.evaluate(vectors, "train")
    test_acc, _ = evaluator.evaluate(vectors, "test")
    logging.info("zoo: K=%d D=%d, test accuracy %.2f..%.2f%% (median %.2f%%)", len(vectors),
                 spec.size, test_acc.min(), test_acc.max(), np.median(test_acc))
    meta = dict(mode=zoo_config.mode, model=model_def.name, dataset=dataset_identity(dataset),
                input_shape=list(model_def.input_shape), num_classes=model_def.num_classes,
                config=zoo_config.to_dict())
    return Zoo(base, vectors, spec, split, train_acc, test_acc, meta), evaluator


def dataset_identity(dataset) -> dict:
    return dict(name=dataset.name, train=len(dataset.y_train), test=len(dataset.y_test),
                fingerprint=getattr(dataset, "fingerprint", ""))


def zoo_evaluator(model_def, base, spec, split, dataset, mesh, eval_config=None):
    """The evaluator every stage shares: train examples for selection, test for reporting."""
    cfg = eval_config or {}
    n_train = int(cfg.get("train_examples", 0) or 0) or len(dataset.y_train)
    return ManyModelEvaluator(
        model_def, base, spec,
        {"train": (dataset.x_train[:n_train], dataset.y_train[:n_train]),
         "test": (dataset.x_test, dataset.y_test)},
        split_point=split, mesh=mesh, batch_size=int(cfg.get("batch_size", 1000)),
        models_per_call=int(cfg.get("models_per_call", 100)),
        vectorize=cfg.get("vectorize", "vmap"))


# ----------------------------------------------------------------------------- subset mode


def _train_kwargs(cfg) -> dict:
    return dict(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr,
                momentum=cfg.momentum, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                milestones=tuple(cfg.milestones), augment=cfg.augment)


def _initial_variables(cfg, model_def, seed: int) -> dict:
    if cfg.init_from:
        from pdiff_jax.convert import load_torch_weights
        logging.info("zoo: starting from converted weights %s", cfg.init_from)
        return load_torch_weights(cfg.init_from, model_def.name, model_def=model_def)
    return jax.device_get(model_def.init(jax.random.key(seed)))


def _subset_zoo(cfg, dataset, model_def, workdir, seed, mesh, metrics_fn):
    variables = _initial_variables(cfg, model_def, seed)
    # Before training: a selector that matches nothing fails at once, not after the epochs.
    spec = ParamSpec.from_variables(variables, selector_of(cfg, model_def))
    if cfg.epochs > 0:
        variables = training.train_classifier(
            model_def, variables, dataset.x_train, dataset.y_train, seed=seed, mesh=mesh,
            checkpoint_dir=workdir / "zoo_ckpt" / "base", metrics_fn=metrics_fn, desc="base",
            **_train_kwargs(cfg))
    split = model_def.split_point_for(spec.names)
    logging.info("zoo: subset of %d numbers in %d tensors; tail starts at %s", spec.size,
                 len(spec.names), split)
    tail_inputs = compute_tail_inputs(model_def, variables, dataset.x_train, split, mesh=mesh,
                                      desc="frozen head")
    vectors = train_subset_snapshots(
        model_def, variables, spec, split, tail_inputs, dataset.y_train,
        num_snapshots=cfg.num_models, save_every=cfg.save_every, optimizer=cfg.subset_optimizer,
        lr=cfg.subset_lr, batch_size=cfg.subset_batch_size, momentum=cfg.momentum,
        seed=seed, mesh=mesh, checkpoint_dir=workdir / "zoo_ckpt" / "subset",
        checkpoint_every=cfg.checkpoint_every, metrics_fn=metrics_fn)
    return variables, vectors, spec, split


def _subset_step(vector, opt_state, base, inputs, labels, *, model_def, spec, start, tx):
    def loss_fn(vec):
        variables = merge(base, unflatten_subset(vec, spec))
        logits = model_def.apply(variables, inputs, train=False, start=start)
        return training.cross_entropy(logits, labels)

    loss, grad = jax.value_and_grad(loss_fn)(vector)
    updates, opt_state = tx.update(grad, opt_state, vector)
    return vector + updates, opt_state, loss


@functools.cache
def _compiled_subset_step(model_def, spec, split, tx):
    return jax.jit(functools.partial(_subset_step, model_def=model_def, spec=spec, start=split,
                                     tx=tx), donate_argnums=(0, 1))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the batch for ``step``: a pure function of (seed, step), so resumes match."""
    epoch, pos = divmod(step * batch_size, n - n % batch_size or n)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[pos:pos + batch_size]


def train_subset_snapshots(model_def, variables, spec, split, tail_inputs, labels, *,
                           num_snapshots: int, save_every: int, optimizer: str, lr: float,
                           batch_size: int, seed: int, momentum: float = 0.9, mesh=None,
                           checkpoint_dir: Path | None = None, checkpoint_every: int = 50,
                           metrics_fn=None, desc: str = "subset",
                           stop_after: int | None = None) -> np.ndarray:
    """Keep training only the subset; return ``num_snapshots`` snapshots ``f32[K, D]``.

    ``tail_inputs`` are the cached activations entering ``split`` (or the
    images when ``split`` is None). One snapshot every ``save_every`` steps.
    ``stop_after`` ends the call early after that many snapshots (a time-sliced
    job); with ``checkpoint_dir`` the next call resumes from there.
    """
    mesh = mesh or sharding.make_mesh()
    batch_size = sharding.round_batch(min(batch_size, len(labels)), mesh)
    tx = training.make_optimizer(optimizer=optimizer, lr=lr, momentum=momentum,
                                 total_steps=num_snapshots * save_every)
    step_fn = _compiled_subset_step(model_def, spec, split, tx)
    vector = jnp.asarray(flatten_subset(variables, spec))
    state = {"vector": vector, "opt_state": tx.init(vector),
             "snapshots": np.zeros((num_snapshots, spec.size), np.float32),
             "count": np.zeros((), np.int32)}
    ckpts = TrainCheckpoints(checkpoint_dir) if checkpoint_dir else None
    if ckpts:
        _, restored = ckpts.restore_latest(state)
        state = restored if restored is not None else state
    base = sharding.replicate(variables, mesh)
    vector = sharding.replicate(jnp.asarray(state["vector"]), mesh)
    opt_state = sharding.replicate(state["opt_state"], mesh)
    snapshots, count = np.array(state["snapshots"]), int(state["count"])
    try:
        bar = tqdm(total=num_snapshots, initial=count, desc=f"{desc} snapshots", leave=False,
                   mininterval=1.0)
        end = num_snapshots if stop_after is None else min(stop_after, num_snapshots)
        while count < end:
            for k in range(save_every):
                idx = batch_indices(len(labels), batch_size, seed, count * save_every + k)
                xb = sharding.shard_batch(jax.tree.map(lambda a, idx=idx: a[idx], tail_inputs),
                                          mesh)
                yb = sharding.shard_batch(labels[idx], mesh)
                vector, opt_state, loss = step_fn(vector, opt_state, base, xb, yb)
            snapshots[count] = np.asarray(vector)
            count += 1
            bar.update(1)
            loss = float(loss)
            if not np.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss is {loss} at snapshot {count}; "
                                         "lower zoo.subset_lr")
            bar.set_postfix(loss=f"{loss:.4f}")
            if metrics_fn and count % 10 == 0:
                metrics_fn(count, {f"{desc}/loss": loss})
            if ckpts and (count % checkpoint_every == 0 or count == end):
                ckpts.save(count, {"vector": vector, "opt_state": opt_state,
                                   "snapshots": snapshots, "count": np.int32(count)})
        bar.close()
    finally:
        if ckpts:
            ckpts.close()
    return snapshots


# ----------------------------------------------------------------------------- seed mode


def _seed_zoo(cfg, dataset, model_def, workdir, seed, mesh, metrics_fn):
    """K networks from seeds ``seed*100003 + i``; the subset covers all their variables."""
    first = jax.device_get(model_def.init(jax.random.key(seed)))
    spec = ParamSpec.from_variables(first, selector_of(cfg, model_def))
    group = max(1, int(cfg.models_per_step))
    K = int(cfg.num_models)
    state = {"vectors": np.zeros((K, spec.size), np.float32), "done": np.zeros((), np.int32)}
    ckpts = TrainCheckpoints(workdir / "zoo_ckpt" / "seed")
    _, restored = ckpts.restore_latest(state)
    state = restored if restored is not None else state
    vectors, done = np.array(state["vectors"]), int(state["done"])
    try:
        with tqdm(total=K, initial=done, desc="seed zoo models", mininterval=1.0) as bar:
            while done < K:
                ids = list(range(done, min(done + group, K)))
                seeds = [seed * 100003 + i for i in ids]
                if cfg.get("stack", "vmap") != "vmap" and len(ids) > 1:
                    trained = train_networks_stacked(
                        model_def, seeds, dataset.x_train, dataset.y_train, mesh=mesh,
                        formulation=cfg.stack, **_train_kwargs(cfg))
                else:
                    trained = training.train_classifiers_batched(
                        model_def, seeds, dataset.x_train, dataset.y_train, mesh=mesh,
                        metrics_fn=metrics_fn, **_train_kwargs(cfg))
                for i, variables in zip(ids, trained, strict=True):
                    vectors[i] = np.asarray(flatten_subset(variables, spec))
                done = ids[-1] + 1
                bar.update(len(ids))
                ckpts.save(done, {"vectors": vectors, "done": np.int32(done)})
    finally:
        ckpts.close()
    if cfg.get("align", "none") != "none":
        vectors = align_zoo(vectors, spec, model_def, method=cfg.align)
    base = merge(first, unflatten_subset(jnp.asarray(vectors[0]), spec))
    return jax.device_get(base), vectors, spec, None
