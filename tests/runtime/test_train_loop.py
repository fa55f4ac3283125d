"""The resumable training loop (pdiff_jax.runtime.train_loop): several units per call,
the divergence check, and checkpoints no closer than a minimum interval."""

import numpy as np
import pytest

from pdiff_jax.runtime import dispatch
from pdiff_jax.runtime.train_loop import TrainingDivergedError, resumable_loop


def test_loop_with_several_units_per_call_checks_every_unit():
    calls = []

    def advance(state, u):
        n = min(3, 10 - u)
        calls.append((u, n))
        losses = np.arange(u, u + n, dtype=np.float64)
        return state + n, np.where(losses == 7, np.nan, losses)

    # unit 7 counted from 0 is the loop's step 8 (steps are counted from 1)
    with pytest.raises(TrainingDivergedError, match="step 8"):
        resumable_loop(advance, 0, total=10, desc="t", hint="h", units_per_call=3,
                       check_every=4)
    assert calls == [(0, 3), (3, 3), (6, 3)]   # checked at 6 (crossed 4) and 9 (crossed 8)
    records = []
    state = resumable_loop(lambda s, u: (s + min(3, 10 - u), np.zeros(min(3, 10 - u))), 0,
                           total=10, desc="t", hint="h", units_per_call=3, check_every=5,
                           metrics_fn=lambda done, rec: records.append(done))
    assert state == 10 and records == [6, 10]


def test_checkpoints_closer_than_the_minimum_interval_are_skipped(tmp_path):
    saved = []

    def run(min_seconds, ckpt_dir):
        resumable_loop(lambda s, u: (s + 1, 0.0), np.zeros(()), total=6, desc="t", hint="h",
                       ckpt_dir=ckpt_dir, checkpoint_every=2,
                       min_checkpoint_seconds=min_seconds)
        saved.append(sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()))

    run(0.0, tmp_path / "every")
    run(3600.0, tmp_path / "throttled")
    assert saved[1] == [6]   # only the last unit: the others came too soon
    assert saved[0][-1] == 6 and len(saved[0]) >= 2
    assert dispatch.min_checkpoint_seconds() == 0.0   # the CPU saves as configured
