"""The command line (pdiff_jax.main): every config file loads through --config, the smoke
argument shrinks it, overrides work and typos fail; --help lists the flags; importing the
package stays light."""

import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.py"))


def _parse(argv):
    """Parse ``--config ...`` flags in a private FlagValues, as main.py does."""
    values = flags.FlagValues()
    argv = ["prog", *argv]
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                    sys_argv=argv)
    values(argv)
    return values.config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_smoke_shrinks(path):
    full = _parse([f"--config={path}"])
    smoke = _parse([f"--config={path}:smoke"])
    assert smoke.zoo.num_models < full.zoo.num_models
    assert smoke.generator.autoencoder.train.steps < full.generator.autoencoder.train.steps
    assert smoke.evaluate.num_generated < full.evaluate.num_generated


def test_override_changes_the_field():
    config = _parse([f"--config={ROOT / 'configs/default.py'}", "--config.zoo.num_models=17",
                     "--config.generator.diffusion.train.steps=5"])
    assert config.zoo.num_models == 17
    assert config.generator.diffusion.train.steps == 5


def test_typo_in_override_fails():
    # ml_collections answers with the closest field name.
    with pytest.raises((KeyError, AttributeError), match='Did you mean "num_models"'):
        _parse([f"--config={ROOT / 'configs/default.py'}", "--config.zoo.num_modles=17"])


def test_locked_config_rejects_new_fields():
    config = _parse([f"--config={ROOT / 'configs/default.py'}"])
    with pytest.raises(AttributeError):
        config.zoo.num_modles = 3


def test_unknown_config_argument_fails():
    with pytest.raises(flags.IllegalFlagValueError, match="unknown config argument"):
        _parse([f"--config={ROOT / 'configs/default.py'}:smok"])


def test_main_help_lists_flags():
    # absl exits with status 1 after printing --help.
    out = subprocess.run([sys.executable, "-m", "pdiff_jax.main", "--help"], capture_output=True,
                         text=True, timeout=1200).stdout  # catches a hang, not slowness
    for flag in ("--config", "--workdir", "--stages"):
        assert flag in out


def test_import_is_light():
    code = ("import sys, pdiff_jax; "
            "heavy = [m for m in ('tensorflow', 'tensorflow_datasets', 'jax', 'flax') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=1200, check=True).stdout.strip()
    assert out == "[]"
