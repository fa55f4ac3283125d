"""Where the runs of a suite go: how many at once, and each one's devices or cores.

On GPUs one run per device (``CUDA_VISIBLE_DEVICES``); on a CPU one run per
physical core, pinned to that core's logical CPUs with ``sched_setaffinity``
(XLA sizes its thread pool to the CPUs a process may use), within memory.
Measured here (shared/CPU_NOTES.md): two one-core processes did 2x the work of
one two-core process, because XLA's CPU intra-op parallelism is weak.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Peak RSS of the default config (cnn_bn, K = 200) is ~2.3 GB (benchmarks/BENCHMARKS.md);
# the default job count leaves this much memory per job.
MEMORY_PER_JOB_GB = 2.5


@dataclass
class Slot:
    """Where a job runs: extra environment variables and the CPUs it may use (None: all)."""

    env: dict[str, str] = field(default_factory=dict)
    cpus: tuple[int, ...] | None = None

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.env.items()]
        if self.cpus is not None:
            parts.append("cpus " + ",".join(map(str, self.cpus)))
        return "; ".join(parts) or "all devices"


def cpu_core_groups() -> list[tuple[int, ...]]:
    """The CPUs this process may use, grouped by physical core (hyperthreads together)."""
    if not hasattr(os, "sched_getaffinity"):   # macOS: no affinity, no topology files
        return [(i,) for i in range(os.cpu_count() or 1)]
    allowed = sorted(os.sched_getaffinity(0))
    groups: dict[tuple[str, str], list[int]] = {}
    for cpu in allowed:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            key = ((topo / "physical_package_id").read_text().strip(),
                   (topo / "core_id").read_text().strip())
        except OSError:
            key = ("cpu", str(cpu))   # no topology: every logical CPU is its own core
        groups.setdefault(key, []).append(cpu)
    return [tuple(g) for g in groups.values()]


def available_memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def probe_devices(python: str = sys.executable, timeout: float = 180) -> tuple[str, int]:
    """``(platform, number of local devices)`` as JAX sees them, asked in a subprocess.

    A subprocess, so that this process never holds (or preallocates) an accelerator.
    Falls back to ``('cpu', 1)`` if JAX cannot be started.
    """
    code = "import jax; d = jax.local_devices(); print(d[0].platform, len(d))"
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env,
                             timeout=timeout, check=True).stdout.split()
        return out[-2], int(out[-1])
    except (subprocess.SubprocessError, OSError, IndexError, ValueError):
        return "cpu", 1


def default_jobs(platform: str, num_devices: int, cores: int,
                 memory_gb: float | None = None) -> int:
    """How many runs at once: one per GPU; on a CPU one per physical core, within memory.

    Other accelerators (TPU): one run holding every chip (splitting a slice between
    processes needs per-topology settings this runner does not make).
    """
    if platform == "gpu":
        return max(1, num_devices)
    if platform != "cpu":
        return 1
    jobs = max(1, cores)
    if memory_gb is not None:
        jobs = min(jobs, max(1, int(memory_gb // MEMORY_PER_JOB_GB)))
    return jobs


def plan_slots(platform: str, num_devices: int, jobs: int,
               core_groups: Sequence[tuple[int, ...]] | None = None) -> list[Slot]:
    """One Slot per concurrent job: its devices (GPU) or its cores (CPU)."""
    if platform == "gpu":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [s for s in visible.split(",") if s] if visible else \
            [str(i) for i in range(num_devices)]
        shared = jobs > len(ids)   # several runs per GPU: no run may preallocate it
        slots = []
        for i in range(jobs):
            env = {"CUDA_VISIBLE_DEVICES": ids[i % len(ids)]}
            if shared:
                env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
            slots.append(Slot(env))
        return slots
    if platform != "cpu":
        return [Slot() for _ in range(jobs)]
    groups = list(core_groups if core_groups is not None else cpu_core_groups())
    if jobs >= len(groups):   # one core each (cores shared if more jobs than cores)
        return [Slot(cpus=groups[i % len(groups)]) for i in range(jobs)]
    # Fewer jobs than cores: split the cores into `jobs` contiguous shares.
    share, extra = divmod(len(groups), jobs)
    slots, start = [], 0
    for i in range(jobs):
        n = share + (1 if i < extra else 0)
        slots.append(Slot(cpus=tuple(c for g in groups[start:start + n] for c in g)))
        start += n
    return slots
