"""What the data tests share: a private data dir holding the full bundled MNIST (built once
per worker, with the network refused), and a fresh interpreter to run code in."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str, **env) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="session")
def run_python():
    """``run_python(code, **env) -> stdout``: ``code`` in a fresh interpreter that imports
    this checkout, with ``env`` added to the environment."""
    return _run_python


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def mnist_full(data_dir, refuse_network):
    """Full bundled MNIST, built (first use) with the network refused."""
    from pdiff_jax.data import load_dataset

    with pytest.MonkeyPatch.context() as mp:
        attempts = refuse_network(mp)
        ds = load_dataset("bundled_mnist", data_dir=data_dir)
    assert attempts == []
    return ds
