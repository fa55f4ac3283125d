"""Metrics as JSON lines in the workdir (one object per line, appended)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pdiff_jax.artifacts import METRICS_JSONL


class MetricsLog:
    """Append ``{"stage", "step", "time", **values}`` lines to ``workdir/metrics.jsonl``.

    Only the writing process (process 0 on a multi-host run) should own one;
    the others pass ``enabled=False``.
    """

    def __init__(self, workdir: str | Path, enabled: bool = True):
        self.path = Path(workdir) / METRICS_JSONL
        self.enabled = enabled
        self.stage = ""

    def for_stage(self, stage: str):
        """A ``metrics_fn(step, values)`` callback that tags lines with ``stage``."""

        def log(step: int, values: dict) -> None:
            self.write(stage, step, values)

        return log

    def write(self, stage: str, step: int, values: dict) -> None:
        if not self.enabled:
            return
        record = {"stage": stage, "step": int(step), "time": round(time.time(), 3)}
        record.update({k: v if isinstance(v, str) else float(v) for k, v in values.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
