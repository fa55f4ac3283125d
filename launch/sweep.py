"""Expand a config's declared sweep (its ``get_sweep(arg)``) into runs, and print or start them.

    python launch/sweep.py configs/resnet18.py --workdir runs/ablations            # print
    python launch/sweep.py configs/resnet18.py:cifar10 --only k --run              # K ablation
    python launch/sweep.py configs/resnet18.py --via "sbatch launch/slurm.sbatch"  # sbatch lines

``get_sweep(arg)`` returns ``{run name: {dotted config key: value}}``. Every
override is checked against the locked config before anything starts, so a
typo fails here, not hours into a cluster job. Each run gets its own workdir
``<workdir>/<name>`` (a run is resumable, so rerunning the sweep skips
finished stages).
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path


def load_sweep(config_spec: str) -> tuple[str, str | None, dict[str, dict]]:
    """``(config file, arg, runs)`` for ``'path.py'`` or ``'path.py:arg'``."""
    path, _, arg = config_spec.partition(":")
    arg = arg or None
    spec = importlib.util.spec_from_file_location(Path(path).stem + "_sweep_config", path)
    if spec is None or not Path(path).is_file():
        raise FileNotFoundError(f"no config file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise ValueError(f"{path} declares no sweep: add get_sweep(arg) returning "
                         "{run name: {dotted config key: value}}")
    runs = module.get_sweep(arg)
    config = module.get_config(arg) if arg is not None else module.get_config()
    for name, overrides in runs.items():
        check_overrides(config, name, overrides)
    return path, arg, runs


def check_overrides(config, name: str, overrides: dict) -> None:
    """Apply ``overrides`` to a locked copy of ``config``; unknown keys or wrong types raise."""
    trial = config.copy_and_resolve_references()
    trial.lock()
    for key, value in overrides.items():
        node = trial
        *parents, leaf = key.split(".")
        try:
            for p in parents:
                node = node[p]
            node[leaf] = value
        except (KeyError, AttributeError, TypeError) as e:
            raise ValueError(f"sweep run {name!r}: cannot set {key}={value!r}: {e}") from e


def flag_value(value) -> str:
    """A value as ml_collections' ``--config.key=VALUE`` flag parser reads it."""
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(flag_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def commands(config_spec: str, workdir: str, runs: dict[str, dict], via: str = "",
             python: str = sys.executable) -> list[tuple[str, list[str]]]:
    """``[(name, argv)]``: one ``pdiff_jax.main`` invocation per run, optionally wrapped."""
    out = []
    for name, overrides in runs.items():
        args = ["--config", config_spec, "--workdir", str(Path(workdir) / name)]
        args += [f"--config.{k}={flag_value(v)}" for k, v in overrides.items()]
        head = shlex.split(via) if via else [python, "-m", "pdiff_jax.main"]
        out.append((name, head + args))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="config file, optionally with ':arg' (configs/resnet18.py)")
    parser.add_argument("--workdir", default="runs/sweep", help="parent of the runs' workdirs")
    parser.add_argument("--only", default="", help="comma-separated run-name prefixes (k,norm)")
    parser.add_argument("--via", default="", help="launcher taking main's flags, e.g. "
                        "'launch/local.sh 2' or 'sbatch launch/slurm.sbatch'")
    parser.add_argument("--run", action="store_true", help="start the runs one after another "
                        "(default: print the commands)")
    args = parser.parse_args(argv)
    _, _, runs = load_sweep(args.config)
    if args.only:
        prefixes = tuple(p for p in args.only.split(",") if p)
        runs = {k: v for k, v in runs.items() if k.startswith(prefixes)}
        if not runs:
            parser.error(f"no run name starts with {args.only!r}")
    failed = []
    for name, argv_ in commands(args.config, args.workdir, runs, via=args.via):
        print(shlex.join(argv_), flush=True)
        if args.run and subprocess.run(argv_).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
