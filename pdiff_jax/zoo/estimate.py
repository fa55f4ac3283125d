"""How long the collect stage will train, from a few timed steps, said before it starts.

The paper's recipe (``configs/resnet18.py``) trains a ResNet-18 for 30 epochs before its
zoo: hours on a 2-core CPU, minutes on one GPU. A user should learn that in seconds,
not from a progress bar after the first epoch. ``estimate_collect`` times a few training
steps of one network as the collect stage will run them and multiplies by the number of
steps the ``zoo`` settings ask for; ``long_collect_message`` words it when it is long.

The probe compiles the very step ``training.train_classifier`` calls for this recipe
(the same cached function, optimizer and shardings), so the stage does not compile it
again; what the probe adds is one to three timed steps (``PROBE_SECONDS``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from pdiff_jax.data.batches import iterate_batches
from pdiff_jax.runtime import sharding
from pdiff_jax.zoo import training
from pdiff_jax.zoo.settings import ZooSettings

LONG_SECONDS = 30 * 60   # a collect stage longer than this is announced
PROBE_SECONDS = 3.0      # timed steps stop once they add up to this ...
PROBE_STEPS = 3          # ... or after this many
# The one GPU measurement of a whole collect stage (BENCHMARKS.md §9, configs/resnet18.py:mnist).
GPU_HINT = ("on one GPU the ResNet-18 recipe's whole collect stage took 127 s "
            "(README, 'On one GPU'; pip install -e '.[gpu]')")


@dataclasses.dataclass(frozen=True)
class Estimate:
    seconds: float         # the collect stage's training, estimated
    steps: float           # whole-network training steps it runs (snapshots converted)
    step_seconds: float    # one step, timed just now
    backend: str
    cores: int
    load: float | None = None   # the 1-minute load average while it was timed


def collect_steps(settings: ZooSettings, steps_per_epoch: int, batch_size: int) -> float:
    """Whole-network training steps of the collect stage for ``settings``.

    Subset zoo: the base training, plus ``num_models * save_every`` snapshot steps
    counted as whole steps of their batch size (an upper bound: they train only the
    network's tail). Seed zoo: every member's epochs (each listed ``snapshot_epochs``
    count is its own run), at one network's step each (an upper bound where
    ``models_per_step`` vmaps small MLPs, which runs them faster per network). The zoo's
    accuracies and its alignment are not counted.
    """
    s = settings
    if s.mode == "subset":
        snapshots = s.num_models * s.save_every * s.subset_batch_size / batch_size
        return s.epochs * steps_per_epoch + snapshots
    epochs = sum(s.snapshot_epochs) or s.epochs
    return s.num_models * epochs * steps_per_epoch


def seconds_per_step(step, state, batches, *, clock=time.perf_counter,
                     budget_s: float = PROBE_SECONDS, max_steps: int = PROBE_STEPS) -> float:
    """The median time of ``step(state, x, y) -> (state, metrics)``, an already compiled
    step, over ``batches``; steps stop at ``max_steps`` or once they add up to
    ``budget_s``."""
    times = []
    for x, y in batches:
        start = clock()
        state, _ = step(state, x, y)
        jax.block_until_ready(state)
        times.append(clock() - start)
        if len(times) >= max_steps or sum(times) >= budget_s:
            break
    if not times:
        raise ValueError("no batch to time: the training set is smaller than one batch")
    return float(np.median(times))


def estimate_collect(dataset, model_def, settings: ZooSettings, *, seed: int, mesh=None,
                     clock=time.perf_counter) -> Estimate:
    """Time a few training steps of one network on ``dataset`` and extrapolate to the
    collect stage of ``settings`` (the host input pipeline, one step per call: the CPU's
    way; ``dispatch`` runs accelerators differently)."""
    mesh = mesh or sharding.make_mesh()
    s = settings
    batch = sharding.round_batch(s.batch_size, mesh)
    steps_per_epoch = len(dataset.x_train) // batch
    epochs = s.epochs if s.mode == "subset" or not s.snapshot_epochs else s.snapshot_epochs[0]
    # train_classifier's optimizer and step for this recipe: both cached, so the stage
    # reuses what the probe compiles.
    tx = training._optimizer_for(s.optimizer, s.lr, epochs * steps_per_epoch, s.momentum,
                                 s.weight_decay, s.schedule, s.milestones)
    step = training.compiled_train_step(model_def, tx, precision=s.precision)
    # Values do not change a step's time: zeros of the variables' shapes, no init to run.
    shapes = jax.eval_shape(model_def.init, jax.random.key(seed))
    variables = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
    state = sharding.replicate(training.init_train_state(variables, tx), mesh)
    batches = iterate_batches(dataset.x_train, dataset.y_train, batch, seed=seed, epoch=0,
                              mesh=mesh, augment=s.augment or None)
    first = next(batches, None)
    if first is None:
        raise ValueError(f"the training set ({len(dataset.x_train)}) is smaller than one "
                         f"batch ({batch})")
    # Compiled ahead of time, so every timed call is a step: the stage's own calls of
    # `step` then find this compilation and do not repeat it.
    compiled = step.lower(state, *first).compile()
    # Every process must run the same steps (they are collectives): one each, not a budget
    # that each process's own clock would end at a different step.
    budget = PROBE_SECONDS if jax.process_count() == 1 else 0.0
    per_step = seconds_per_step(compiled, state, itertools.chain([first], batches), clock=clock,
                                budget_s=budget)
    steps = collect_steps(s, steps_per_epoch, batch)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Estimate(steps * per_step, steps, per_step, jax.default_backend(), cores or 1, load)


def about(seconds: float) -> str:
    """``'14 h'``, ``'2.5 h'``, ``'45 min'``: an estimate's precision, no more."""
    hours = seconds / 3600
    if hours >= 10:
        return f"{hours:.0f} h"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{max(1, round(seconds / 60))} min"


def long_collect_message(estimate: Estimate, arch: str,
                         threshold_s: float = LONG_SECONDS) -> str | None:
    """The one line that announces a long collect stage (None below ``threshold_s``)."""
    e = estimate
    if e.seconds < threshold_s:
        return None
    line = (f"collect will take about {about(e.seconds)} on {e.backend} ({e.cores} cores): "
            f"{e.steps:,.0f} training steps of {arch} at {e.step_seconds:.2f} s each, timed "
            f"just now{'' if e.load is None else f' at load {e.load:.1f}'} (the zoo's "
            "accuracies come on top)")
    return line + ("; " + GPU_HINT if e.backend == "cpu" else "")


def announce(dataset, model_def, settings: ZooSettings, *, seed: int, mesh=None) -> None:
    """One log line with the collect stage's training time, just before it trains: a
    warning with the GPU hint when long. CPU only: accelerators run k steps per call on
    device-resident data, which this probe would not measure."""
    if jax.default_backend() != "cpu":
        return
    found = estimate_collect(dataset, model_def, settings, seed=seed, mesh=mesh)
    message = long_collect_message(found, model_def.name)
    if message:
        logging.warning(message)
    else:
        logging.info("collect: about %s of training (%.3f s per step, timed)",
                     about(found.seconds), found.step_seconds)
