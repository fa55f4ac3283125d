"""Command-line entry point: ``python -m pdiff_jax.main --config configs/NAME.py --workdir DIR``.

Kept short on purpose: all the work is in library functions that a notebook
can call too (``pdiff_jax.pipeline.run_pipeline``).
"""

from __future__ import annotations

import logging as std_logging
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from pdiff_jax import distributed, pipeline
from pdiff_jax.config_errors import unknown_field_message

# The built-in default lives in the package, so `--config.x=y` works without --config too.
_DEFAULT_CONFIG = str(Path(__file__).with_name("default_config.py"))


try:
    _CONFIG = config_flags.DEFINE_config_file(
        "config", _DEFAULT_CONFIG, "Config file (configs/*.py, optionally 'file.py:smoke'). "
        "Default: the built-in config (bundled MNIST).", lock_config=True)
except (AttributeError, KeyError) as _e:  # without --config, overrides are applied right here
    _message = unknown_field_message(_e)
    if _message is None:
        raise
    raise SystemExit(_message) from None
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Directory for artifacts, logs, report.")
_STAGES = flags.DEFINE_list(
    "stages", [], f"Stages to run, in order (default: all): {','.join(pipeline.STAGE_NAMES)}.")


def _quiet_orbax(record) -> bool:
    # Orbax logs every checkpoint operation at INFO; keep its warnings only.
    return "orbax" not in record.pathname or record.levelno >= std_logging.WARNING


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_quiet_orbax)
    # Before anything touches a device: join the other processes of a multi-host run.
    distributed.maybe_initialize()
    logging.info("workdir: %s", _WORKDIR.value)
    pipeline.run_pipeline(_CONFIG.value, _WORKDIR.value, stages=_STAGES.value or None)


def run():
    """Console-script entry (``pdiff-jax``)."""
    try:
        app.run(main)
    except (AttributeError, KeyError) as e:  # with --config: raised while parsing flags
        message = unknown_field_message(e)
        if message is None:
            raise
        sys.exit(message)


if __name__ == "__main__":
    run()
