"""notebooks/quickstart.ipynb runs top to bottom (nbclient, on the CPU) so it never rots.

Its runs are smoke-sized and finished already (tests/conftest.py, the `scz` fixture: the
Small CNN Zoo fixture through main), so the notebook loads a run, samples and measures
100 networks, draws accuracy against novelty, and imports the zoo again (the pipeline
checks the source and keeps the finished stages).
"""

from __future__ import annotations

from pathlib import Path

import ipykernel  # noqa: F401  (the kernel nbclient starts: the test extra installs all three)
import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def _text(cell) -> str:
    return "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", ""))
                   for o in cell.get("outputs", []))


def test_quickstart_runs_top_to_bottom(scz, tmp_path_factory, tfds_dir, monkeypatch):
    folder, workdir, _ = scz.finished_run(tmp_path_factory.getbasetemp() / "small_cnn_zoo",
                                          tfds_dir)
    env = dict(scz.run_env(tfds_dir), PDIFF_QUICKSTART_WORKDIR=str(workdir),
               PDIFF_QUICKSTART_SMOKE="1", PDIFF_QUICKSTART_ZOO=str(folder),
               PDIFF_QUICKSTART_ZOO_WORKDIR=str(workdir))
    for key, value in env.items():   # the kernel inherits this process's environment
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(scz.ROOT)}}).execute()
    text = "\n".join(_text(c) for c in notebook.cells if c.cell_type == "code")
    assert "zoo: K = 16 networks 'small_cnn_zoo', D = 4970" in text
    assert "generated: best" in text
    figures = [o for c in notebook.cells for o in c.get("outputs", [])
               if "image/png" in o.get("data", {})]
    assert len(figures) == 1
    assert "format: small_cnn_zoo" in text and "imported 16 networks (small_cnn_zoo)" in text
    assert "stored" in text and "measured here" in text
