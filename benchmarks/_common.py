"""Helpers shared by the benchmark scripts: machine info, medians, peak memory, load."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return "?"


def ram_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        return kb / 2**20
    except (OSError, StopIteration):
        return float("nan")


def versions() -> str:
    out = []
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def machine_info() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores, {ram_gb():.1f} GB RAM; python "
            f"{platform.python_version()}, {versions()}; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


def load() -> str:
    """The 1/5/15-minute load averages as 'a/b/c'."""
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def median(xs) -> float:
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return float("nan")
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def timed_runs(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn`` after ``warmup`` calls (compile excluded).

    Each call's result is waited for (JAX dispatches asynchronously), so a ``fn``
    returning device arrays is timed to their completion.
    """
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn())
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return ts


def peak_rss_gb() -> float:
    """Peak resident memory of this process (ru_maxrss, kB on Linux) in GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_child(argv: list[str], timeout: float | None = None) -> dict:
    """Run ``python argv`` in a fresh process; parse the JSON object on its last stdout line.

    Adds 'child_peak_rss_gb' (the child's own VmHWM/ru_maxrss as it reports it is preferred;
    RUSAGE_CHILDREN is a fallback) and 'child_wall_s'.
    """
    t = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                             check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    wall = time.perf_counter() - t
    if out.returncode:
        tail = (out.stderr or out.stdout)[-600:]
        return {"error": f"exit {out.returncode}: {tail}", "child_wall_s": wall}
    lines = [ln for ln in out.stdout.strip().splitlines() if ln.startswith("{")]
    r = json.loads(lines[-1])
    r.setdefault("child_wall_s", wall)
    return r
