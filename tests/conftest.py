"""Shared test settings.

Compiling dominates small JAX tests on a CPU, so the persistent compilation
cache is on for the whole session (a second run of the suite is much faster).
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax

_CACHE = Path(os.environ.get("PDIFF_TEST_JAX_CACHE",
                             Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"))
_CACHE.mkdir(parents=True, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    """A private TFDS data dir: tests never depend on the home directory."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def small_mnist(tfds_dir):
    """3,000 / 1,000 class-balanced digits of the bundled MNIST."""
    from pdiff_jax.data import load_dataset

    return load_dataset("mnist", data_dir=str(tfds_dir), max_train=3000, max_test=1000)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, tfds_dir):
    """One `python -m pdiff_jax.main` run on the smoke config, shared by the tests that
    read a finished run: (workdir, process, seconds, command)."""
    workdir = tmp_path_factory.mktemp("run")
    cmd = [sys.executable, "-m", "pdiff_jax.main", "--config=configs/default.py:smoke",
           f"--workdir={workdir}", f"--config.data.data_dir={tfds_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parent.parent)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc, elapsed, cmd


def _refuse_network(monkeypatch) -> list:
    """Make every socket connection fail; returns the list of attempted addresses."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture(scope="session")
def refuse_network():
    """``refuse_network(monkeypatch) -> attempts``, for fixtures of any scope."""
    return _refuse_network


@pytest.fixture
def no_network(monkeypatch):
    """The network is refused for this test; the fixture value lists attempted addresses."""
    return _refuse_network(monkeypatch)
