"""Every Python snippet of README.md runs as written (on the smoke run's workdir)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_notebook_and_flattening_snippets():
    snippets = python_snippets()
    assert len(snippets) == 2
    assert "pdiff_jax.load" in snippets[0] and "flatten_subset" in snippets[1]


def test_notebook_snippet_runs_on_a_finished_run(smoke_run):
    workdir = smoke_run[0]
    code = python_snippets()[0].replace('"runs/default"', repr(str(workdir)))
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["out"].vectors.shape == (100, 256)
    assert ns["test_acc"].shape == (100,) and np.all((ns["test_acc"] >= 0)
                                                     & (ns["test_acc"] <= 100))
    assert ns["logits"].shape == (8, 10)
    assert ns["results"]["pdiff"]["n"] == 8   # the run's own evaluation (smoke: 8 samples)


def test_flattening_snippet_round_trips():
    ns: dict = {}
    exec(compile(python_snippets()[1], "README.md", "exec"), ns)
    assert ns["vec"].shape == (2048,)
    import jax
    jax.tree.map(np.testing.assert_array_equal, ns["new"], ns["variables"])
