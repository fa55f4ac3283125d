"""What the config tests share: the shipped configs, copies with one field changed (to a
value of any type, as a library user can set it) and the smoke config on the tests'
private data dir."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ml_collections
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, arg: str | None) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _with(config: ml_collections.ConfigDict, path: str, value) -> ml_collections.ConfigDict:
    d = config.to_dict()
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[last] = value
    return ml_collections.ConfigDict(d)


@pytest.fixture(scope="session")
def shipped_config():
    """``shipped_config(name, arg) -> ConfigDict``: ``configs/<name>.py`` with ``arg``."""
    return _load


@pytest.fixture(scope="session")
def config_with():
    """``config_with(config, path, value)``: a copy of ``config`` with the dotted ``path``
    set to ``value`` of any type (a field it lacks is added)."""
    return _with


@pytest.fixture(scope="session")
def smoke_config(tfds_dir):
    """``smoke_config(**fields)``: the smoke config on the tests' data dir, with
    ``section__field=value`` overrides of any type."""
    from pdiff_jax.config.defaults import get_config

    def make(**fields) -> ml_collections.ConfigDict:
        config = get_config("smoke")
        config.data.data_dir = str(tfds_dir)
        for path, value in fields.items():
            config = _with(config, path.replace("__", "."), value)
        return config

    return make


@pytest.fixture(scope="session")
def one_line():
    """``one_line(error) -> str``: its message, asserted to be one line."""
    def check(e: BaseException) -> str:
        text = str(e)
        assert "\n" not in text, text
        return text

    return check
