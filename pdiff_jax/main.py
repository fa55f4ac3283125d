"""Command-line entry point: ``python -m pdiff_jax.main --config configs/NAME.py --workdir DIR``.

Kept short on purpose: all the work is in library functions that a notebook
can call too (``pdiff_jax.pipeline.run_pipeline``).

The whole config is checked before any work (``pdiff_jax.config.check``). A
mistake of the user's prints one line saying what is wrong and how to fix it,
and exits with 2 (a usage error: a config value, field or stage) or 1 (data,
checkpoints, diverged training, the workdir); ``--verbosity=1`` or
``PDIFF_TRACEBACK=1`` adds the traceback. Any other exception is a bug and
prints its traceback (``pdiff_jax.errors``).
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from pdiff_jax import errors, pipeline
from pdiff_jax.config.unknown_fields import unknown_field_message
from pdiff_jax.runtime import distributed

# The built-in default lives in the package, so `--config.x=y` works without --config too.
_DEFAULT_CONFIG = str(Path(__file__).with_name("config") / "defaults.py")


try:
    _CONFIG = config_flags.DEFINE_config_file(
        "config", _DEFAULT_CONFIG, "Config file (configs/*.py, optionally 'file.py:smoke'). "
        "Default: the built-in config (bundled MNIST).", lock_config=True)
except (AttributeError, KeyError) as _e:  # without --config, overrides are applied right here
    _message = unknown_field_message(_e)
    if _message is None:
        raise
    print(_message, file=sys.stderr)
    raise SystemExit(errors.EXIT_USAGE) from None
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Directory for artifacts, logs, report.")
_STAGES = flags.DEFINE_list(
    "stages", [], f"Stages to run, in order (default: all): {','.join(pipeline.STAGE_NAMES)}.")


def _quiet_orbax(record) -> bool:
    # Orbax logs every checkpoint operation at INFO; keep its warnings only.
    return "orbax" not in record.pathname or record.levelno >= std_logging.WARNING


def main(argv):
    if len(argv) > 1:
        raise errors.UsageError(f"unexpected arguments {argv[1:]}: every setting is a flag, "
                                "e.g. --config.zoo.num_models=200 (see --helpfull)")
    # 'file.py:arg' -> 'file.py' (ml_collections splits on ':' too).
    config_file = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
    if not os.path.isfile(config_file):
        raise errors.UsageError(f"--config: no such file {config_file}; e.g. "
                                "--config=configs/default.py (or configs/default.py:smoke)")
    unknown = [s for s in _STAGES.value if s not in pipeline.STAGE_NAMES]
    if unknown:
        raise errors.UsageError(f"--stages: unknown stage(s) {unknown}; choose from "
                                f"{','.join(pipeline.STAGE_NAMES)}, e.g. --stages=sample,evaluate")
    logging.get_absl_handler().addFilter(_quiet_orbax)
    # Before anything touches a device: join the other processes of a multi-host run.
    distributed.maybe_initialize()
    logging.info("workdir: %s", _WORKDIR.value)
    pipeline.run_pipeline(_CONFIG.value, _WORKDIR.value, stages=_STAGES.value or None)


def _parse_flags(argv):
    """absl's flag parsing, exiting 2 (a usage error) rather than 1 on a bad flag."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = str(e)
        lines = [line for line in message.splitlines() if line.strip()]
        if "Traceback (most recent call last)" in message and not errors.traceback_requested():
            # A config file's get_config raised: its own message is the last line.
            message = f"{lines[0]} {lines[-1].strip()}"
        print(f"FATAL Flags parsing error: {message}\nPass --helpshort or --helpfull to see "
              "help on flags.", file=sys.stderr)
        sys.exit(errors.EXIT_USAGE)


def _verbosity() -> int:
    try:
        return int(flags.FLAGS["verbosity"].value) if flags.FLAGS.is_parsed() else 0
    except (KeyError, ValueError, TypeError):
        return 0


def run():
    """Console-script entry (``pdiff-jax``): user errors as one line, bugs with a traceback."""
    try:
        app.run(main, flags_parser=_parse_flags)
    except Exception as e:
        message = unknown_field_message(e)  # with --config: raised while parsing flags
        if message is not None:
            print(message, file=sys.stderr)
            sys.exit(errors.EXIT_USAGE)
        code = errors.exit_code_for(e)
        if code is None or errors.traceback_requested(_verbosity()):
            raise
        print(f"pdiff_jax: error: {errors.user_message(e)}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    run()
