"""User errors vs bugs: the classification (pdiff_jax.errors) and what the command line prints."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pdiff_jax import errors
from pdiff_jax.config.check import ConfigError, SelectorError, WorkdirError
from pdiff_jax.data.catalog import DataFormatError, DataMissingError
from pdiff_jax.generator import TrainingDivergedError
from pdiff_jax.params.subset import SubsetError
from pdiff_jax.runtime.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("exc, code", [
    (ConfigError("zoo.num_models must be ..."), 2),
    (SelectorError("zoo.selector: ..."), 2),
    (errors.UsageError("--stages: ..."), 2),
    (DataMissingError("Data set 'cifar10' ..."), 1),
    (DataFormatError("x_train has shape ..."), 1),
    (CheckpointError("no finished zoo ..."), 1),
    (SubsetError("vector has dtype float64 ..."), 1),
    (TrainingDivergedError("autoencoder: loss became inf ..."), 1),
    (FloatingPointError("base: the parameters became NaN/inf ..."), 1),
    (WorkdirError(errno.EACCES, "workdir /x is not writable ..."), 1),
    (OSError(errno.ENOSPC, "stage collect: no space left ..."), 1),
    (ValueError("operands could not be broadcast"), None),
    (KeyError("params"), None),
    (TypeError("unsupported operand"), None),
    (OSError(errno.EBADF, "bad file descriptor"), None),
], ids=lambda x: type(x).__name__ if isinstance(x, BaseException) else str(x))
def test_exit_code_for(exc, code):
    assert errors.exit_code_for(exc) == code


def test_workdir_error_prints_without_errno_prefix():
    e = WorkdirError(errno.EACCES, "workdir /x is not writable; pass a writable --workdir")
    assert str(e) == "workdir /x is not writable; pass a writable --workdir"
    assert e.errno == errno.EACCES and isinstance(e, OSError)


def test_user_message_keeps_instructions_indented():
    e = DataMissingError("Data set 'x' is not prepared.\nTo obtain it, run:\n  tfds build x\n")
    assert errors.user_message(e) == ("Data set 'x' is not prepared.\n  To obtain it, run:\n"
                                      "    tfds build x")


def test_traceback_requested(monkeypatch):
    monkeypatch.delenv("PDIFF_TRACEBACK", raising=False)
    assert not errors.traceback_requested(0)
    assert errors.traceback_requested(1)
    monkeypatch.setenv("PDIFF_TRACEBACK", "1")
    assert errors.traceback_requested(0)
    monkeypatch.setenv("PDIFF_TRACEBACK", "0")
    assert not errors.traceback_requested(0)


# ----------------------------------------------------------------------------- the command line


def _main(*args, tmp_path, env=None, code=None):
    """Run ``python -m pdiff_jax.main`` (or ``code``) on the smoke config in a fresh workdir."""
    argv = ([sys.executable, "-c", code] if code else [sys.executable, "-m", "pdiff_jax.main"])
    argv += [f"--config={ROOT / 'configs/default.py'}:smoke",
             f"--config.data.data_dir={tmp_path / 'tfds'}", f"--workdir={tmp_path / 'wd'}", *args]
    full_env = {k: v for k, v in os.environ.items() if k != "PDIFF_TRACEBACK"}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=False,
                          env=full_env, cwd=tmp_path)


def _only_line(stderr: str) -> str:
    """The one line of stderr that is not an absl log record (``I1127 15:11:30 ... ]``)."""
    lines = [line for line in stderr.splitlines()
             if line.strip() and not re.match(r"[IWEF]\d{4} \d\d:\d\d:\d\d", line)]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("args, code, line", [
    (["--config.zoo.num_models=0"], 2,
     "pdiff_jax: error: zoo.num_models must be a positive integer, got 0; "
     "e.g. --config.zoo.num_models=200"),
    (["--config.zoo.num_models=-3"], 2,
     "pdiff_jax: error: zoo.num_models must be a positive integer, got -3; "
     "e.g. --config.zoo.num_models=200"),
    (["--config.generator.sampling.sampler=ddpm"], 2,
     "pdiff_jax: error: generator.sampling.steps must be 0 for sampler 'ddpm' (it runs all "
     "T = 1000 steps), got 10; use --config.generator.sampling.steps=0, or "
     "--config.generator.sampling.sampler=ddim for 10 steps"),
    (["--stages=collect,sampel"], 2,
     "pdiff_jax: error: --stages: unknown stage(s) ['sampel']; choose from "
     "collect,autoencoder,diffusion,sample,evaluate,report, e.g. --stages=sample,evaluate"),
    (["--config.zoo.num_modles=3"], 2,
     "FATAL Flags parsing error: --config.zoo.num_modles: the config has no field "
     "'num_modles'. Did you mean \"num_models\" instead of \"num_modles\"?"),
    (["--stages=sample"], 2, None),  # the workdir has no zoo to sample for
], ids=["num_models_0", "num_models_-3", "ddpm_steps", "unknown_stage", "unknown_field",
        "nothing_to_sample"])
def test_user_errors_are_one_line_with_their_exit_code(args, code, line, tmp_path):
    res = _main(*args, tmp_path=tmp_path)
    assert res.returncode == code, res.stderr[-3000:]
    got = _only_line(res.stderr)
    if line is None:
        assert got.startswith("pdiff_jax: error: stage 'sample' needs the 'collect' stage's "
                              "result"), got
    else:
        assert got == line
    if code == 2:
        assert not (tmp_path / "wd").exists()  # nothing ran


def test_bad_config_argument_is_one_message_and_exit_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pdiff_jax.main",
                          f"--config={ROOT / 'configs/default.py'}:smok"],
                         capture_output=True, text=True, timeout=1200, check=False, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "ValueError: unknown config argument 'smok'; use 'smoke' or nothing" in res.stderr


def test_traceback_on_request(tmp_path):
    res = _main("--config.zoo.num_models=0", tmp_path=tmp_path, env={"PDIFF_TRACEBACK": "1"})
    assert res.returncode != 0
    assert "Traceback (most recent call last)" in res.stderr
    assert res.stderr.rstrip().endswith(
        "ConfigError: zoo.num_models must be a positive integer, got 0; "
        "e.g. --config.zoo.num_models=200")


def test_bugs_keep_their_traceback(tmp_path):
    # A genuine bug inside the pipeline: the traceback is what a bug report needs.
    code = textwrap.dedent("""
        import sys
        from pdiff_jax import main, pipeline

        def broken(*args, **kwargs):
            return {}["a key the code forgot"]

        pipeline.run_pipeline = broken
        sys.argv = ["pdiff_jax", *sys.argv[1:]]
        main.run()
    """)
    res = _main(tmp_path=tmp_path, code=code)
    assert res.returncode == 1
    assert "Traceback (most recent call last)" in res.stderr
    assert "in broken" in res.stderr
    assert res.stderr.rstrip().endswith("KeyError: 'a key the code forgot'")
