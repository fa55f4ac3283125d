"""The one resumable training loop every trainer in pdiff_jax runs on.

A trainer describes one *unit* of work (an epoch of a classifier, one subset
snapshot, one generator step, one group of seed models) as
``advance(state, unit) -> (state, loss)``; ``resumable_loop`` runs units
``[start, total)``, where ``start`` comes from the newest checkpoint, and owns
what every loop needs the same way:

- one NaN policy: the losses are fetched at every check point (every
  ``check_every`` units, at each checkpoint and at the end) and a non-finite
  one raises :class:`TrainingDivergedError` naming the loop, the unit and a
  hint, before that state can be checkpointed;
- checkpoints every ``checkpoint_every`` units (never of a diverged state);
- a tqdm bar and ``metrics_fn(unit, record)`` at each check point.

With ``units_per_call = k > 1`` one ``advance(state, u)`` call runs the units
``[u, min(u + k, total))`` (several optimizer steps per dispatch, for GPUs) and
returns one loss per unit; checkpoints and check points still fall on the same
unit counts, so a run may resume with a different ``k``.

Resuming is exact: a checkpoint holds the whole state, and ``advance`` derives
all randomness of a unit from the unit's index.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from pdiff_jax.errors import UserError
from pdiff_jax.runtime import sharding
from pdiff_jax.runtime.checkpoint import TrainCheckpoints

MetricsFn = Callable[[int, dict], None]


class TrainingDivergedError(FloatingPointError, UserError):
    """A loss (or the parameters) became NaN/inf; the message names the step and a fix."""


def check_finite(losses, *, first_unit: int, desc: str, hint: str, unit: str = "step") -> None:
    """Raise :class:`TrainingDivergedError` at the first non-finite entry of ``losses``."""
    losses = np.atleast_1d(np.asarray(losses, np.float64))
    bad = np.flatnonzero(~np.isfinite(losses.reshape(len(losses), -1)).all(axis=1))
    if bad.size:
        value = losses[bad[0]]
        raise TrainingDivergedError(f"{desc}: loss became {value} at {unit} "
                                    f"{first_unit + int(bad[0])}. {hint}")


def resumable_loop(advance: Callable[[Any, int], tuple[Any, Any]], state: Any, *, total: int,
                   desc: str, hint: str, unit: str = "step", ckpt_dir: Path | None = None,
                   checkpoint_every: int = 1, check_every: int = 1,
                   restore: Callable[[Any], Any] = lambda s: s,
                   metrics_fn: MetricsFn | None = None, units_per_call: int = 1,
                   min_checkpoint_seconds: float = 0.0) -> Any:
    """Run ``advance`` over units ``[start, total)`` and return the final state.

    Args:
      advance: ``(state, unit) -> (state, loss)``; ``loss`` may stay on device (it
        is fetched at check points only, so dispatch is not serialized).
      state: the initial state; also the template a checkpoint is restored into.
      restore: maps a restored host state back onto devices (e.g. replicate it).
      units_per_call: units one ``advance`` call runs; with more than one its loss
        has a leading axis with one entry per unit it ran.
      min_checkpoint_seconds: skip a due checkpoint until this long after the last
        one (the last unit is always saved): on a GPU a save (~0.3 s) can cost more
        than the 500 steps between two of them.
    """
    k = max(1, int(units_per_call))
    ckpts = TrainCheckpoints(ckpt_dir) if ckpt_dir else None
    start = 0
    with ckpts if ckpts else contextlib.nullcontext():
        if ckpts:
            start, restored = ckpts.restore_latest(state)
            if restored is not None:
                state = restore(restored)
        pending: list = []
        t0, u0 = time.perf_counter(), start
        last_save = t0
        bar = tqdm(total=total, initial=start, desc=desc, leave=False, dynamic_ncols=True,
                   mininterval=1.0)
        try:
            for u in range(start, total, k):
                state, loss = advance(state, u)
                done = min(u + k, total)
                pending.append(loss if k > 1 else [loss])   # [units run, ...]
                at_ckpt = (ckpts is not None and _crossed(u, done, checkpoint_every)
                           and time.perf_counter() - last_save >= min_checkpoint_seconds)
                if not (_crossed(u, done, check_every) or done == total or at_ckpt):
                    continue
                # to_host: a loss split over another process's devices (one per model of a
                # sharded model axis) is all-gathered, so every process checks the same values.
                losses = np.concatenate([np.asarray(x, np.float64)
                                         for x in sharding.to_host(pending)])
                check_finite(losses, first_unit=done - len(losses) + 1, desc=desc, hint=hint,
                             unit=unit)
                pending = []
                if at_ckpt or (ckpts is not None and done == total):
                    # A host copy (the state is donated), gathered where split over processes.
                    ckpts.save(done, jax.tree.map(np.array, sharding.to_host(state)))
                    last_save = time.perf_counter()
                now = time.perf_counter()
                rec = {"stage": desc, "loss": float(losses.mean()),
                       "loss_last": float(np.ravel(losses[-1]).mean()),
                       f"{unit}s_per_s": (done - u0) / max(now - t0, 1e-9)}
                t0, u0 = now, done
                bar.update(done - bar.n)
                bar.set_postfix(loss=f"{rec['loss']:.4g}")
                if metrics_fn is not None:
                    metrics_fn(done, rec)
        finally:
            bar.close()
    return state


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(before, after]``."""
    return after // every > before // every
