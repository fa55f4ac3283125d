"""benchmarks/gpu.sh --cpu-smoke: the device benchmark's code at toy sizes, on the CPU.

Only what the script reports is checked here; how fast it runs is the benchmark's own
business (benchmarks/), not a test's: a loaded machine makes any time limit flaky.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_runs_on_cpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path),
               JAX_COMPILATION_CACHE_DIR=str(REPO / ".pytest_cache" / "jax"))
    # The timeout catches a hang, not slowness.
    # Budgets far beyond the script's own (450 s, e2e 330 s), so a loaded machine that is
    # slow still finishes every section: what is checked is what it reports.
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--cpu-smoke", "--budget", "2400",
                           "--e2e-budget", "1800"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "gpu.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert not [r for r in rows if "| failed |" in r or "skipped" in r], table
    for what in ("end to end", "real training loop", "AE + diffusion step", "DDPM-1000",
                 "DDIM-50", "host pipeline", "device-resident, bf16", "whole script"):
        assert any(what in r for r in rows), (what, table)
    assert "(finished)" in table   # the ResNet-18 recipe ran through every stage
