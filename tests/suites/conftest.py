"""What the suite tests share: ``launch/sweep.py`` (the suites' command line) loaded as a
module, and the markdown table a suite's summary holds, read back."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sweep():
    """``launch/sweep.py`` as a module."""
    spec = importlib.util.spec_from_file_location("launch_sweep", ROOT / "launch" / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(md: str) -> dict[str, dict[str, str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    split = [[c.strip().replace("\0", "|") for c in
              ln.strip().strip("|").replace("\\|", "\0").split("|")] for ln in lines]
    header, rows = split[0], split[2:]
    assert all(len(r) == len(header) for r in rows), "a cell broke the table"
    return {r[0]: dict(zip(header, r, strict=True)) for r in rows}


@pytest.fixture(scope="session")
def markdown_table():
    """``markdown_table(md) -> {run: {column: cell}}``: the first markdown table of ``md``
    (cells unescaped)."""
    return _table
