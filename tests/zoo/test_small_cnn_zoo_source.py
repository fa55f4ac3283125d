"""zoo.source = a Small CNN Zoo folder: through main to report.md, the imported networks'
logits against a NumPy forward pass of the zoo's own rows, and every malformed source
refused by the config check in one line (tests/conftest.py, the `scz` fixture makes the zoo)."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

from pdiff_jax.config.defaults import config_file
from pdiff_jax.errors import ConfigError, MismatchError, UserError
from pdiff_jax.zoo.sources import small_cnn_zoo as scz_files


@pytest.fixture(scope="module")
def zoo_dir(scz, tmp_path_factory, tfds_dir):
    return scz.zoo_folder(tmp_path_factory.getbasetemp() / "small_cnn_zoo", tfds_dir)


@pytest.fixture(scope="module")
def finished(scz, tmp_path_factory, tfds_dir):
    return scz.finished_run(tmp_path_factory.getbasetemp() / "small_cnn_zoo", tfds_dir)


@pytest.fixture
def config(scz, zoo_dir, monkeypatch, tfds_dir):
    """The smoke config on the fixture zoo, reading the tests' TFDS folder."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    c = config_file(scz.ROOT / "configs" / "small_cnn_zoo.py", "smoke")
    c.zoo.source = str(zoo_dir)
    return c


def _refused(config, match: str, error=UserError) -> str:
    """The config check's one-line refusal of ``config``."""
    from pdiff_jax.config.check import validate_config

    with pytest.raises(error, match=match) as e:
        validate_config(config)
    first = str(e.value).splitlines()[0]
    assert first.startswith(("zoo.", "model.")) and len(first) < 600, first
    return first


def _copy(zoo_dir, tmp_path):
    return shutil.copytree(zoo_dir, tmp_path / "zoo")


def _rewrite_metrics(folder, change) -> None:
    with gzip.open(folder / scz_files.METRICS, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        change(row)
    with gzip.open(folder / scz_files.METRICS, "wt", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# ----------------------------------------------------------------------------- end to end


def test_main_runs_the_imported_zoo_to_report(scz, finished):
    folder, workdir, proc = finished
    assert (workdir / "report.md").is_file() and (workdir / "results.json").is_file()
    assert "arch=small_cnn_zoo D=4970 K=16" in proc.stdout
    meta = json.loads((workdir / "zoo" / "meta.json").read_text())
    source = meta["source"]
    assert source["format"] == "small_cnn_zoo" and source["path"] == str(folder.absolute())
    # The filter: final checkpoints of finite ReLU runs; run 24 (NaN at its end) is left out.
    relu_runs = [r for r in range(scz.RUNS) if scz.BASE_RUNS[r % 3][0] == "relu"]
    final = [r * len(scz.STEPS) + len(scz.STEPS) - 1 for r in relu_runs if r != scz.NAN_RUN]
    assert source["rows"] == final
    # Training nothing: the collect stage left no classifier checkpoints.
    assert not (workdir / "checkpoints" / "collect").exists()


def test_stored_accuracies_equal_the_measured_ones(finished):
    from pdiff_jax.run import open_run

    zoo = open_run(finished[1]).zoo
    np.testing.assert_allclose(zoo.meta["source"]["stored_test_acc"], zoo.test_acc, atol=0.01)


def test_imported_networks_give_the_logits_of_the_zoos_rows(scz, finished):
    """Flax on the library's normalized images == NumPy on the zoo's [-1, 1] images."""
    import jax

    from pdiff_jax.params.subset import merge, unflatten_subset
    from pdiff_jax.run import open_run

    folder, workdir, _ = finished
    run = open_run(workdir)
    zoo, model = run.zoo, run.model_def
    raw = np.load(scz.ROOT / "pdiff_jax" / "data" / "bundled" / "mnist.npz")
    images = raw["x_test"][:100, ..., None].astype(np.float32) / 255.0
    ours = (images - np.float32(run.dataset.mean[0])) / np.float32(run.dataset.std[0])
    theirs = images * 2.0 - 1.0
    weights = np.load(folder / "weights.npy")
    layout = scz.layout_rows(scz.keras_variables())
    apply = jax.jit(lambda v, x: model.apply(merge(zoo.base, unflatten_subset(v, zoo.spec)), x))
    for k, row in enumerate(zoo.meta["source"]["rows"]):
        expected = scz.reference_logits(scz.params_of(weights[row], layout), theirs, "relu")
        got = np.asarray(apply(zoo.vectors[k], ours))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=f"row {row}")


def test_a_malformed_source_is_one_line_from_main_before_any_work(scz, zoo_dir, tmp_path, tfds_dir):
    folder = _copy(zoo_dir, tmp_path)
    (folder / "metrics.csv.gz").unlink()
    workdir = tmp_path / "run"
    proc = subprocess.run(scz.main_command(folder, workdir), capture_output=True, text=True,
                          timeout=300, cwd=scz.ROOT, env=scz.run_env(tfds_dir))
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("pdiff_jax: error")]
    assert errors == [f"pdiff_jax: error: zoo.source: {folder} has no metrics.csv.gz (a Small "
                      "CNN Zoo folder holds weights.npy, layout.csv, metrics.csv.gz, as "
                      "unpacked from the zoo's <data set>.tar.xz); fix zoo.source"]
    assert not workdir.exists()


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["weights.npy", "layout.csv", "metrics.csv.gz"])
def test_missing_file(config, zoo_dir, tmp_path, name):
    config.zoo.source = str(_copy(zoo_dir, tmp_path))
    (tmp_path / "zoo" / name).unlink()
    _refused(config, f"has no {name}.*fix zoo.source")


def test_wrong_row_length(config, zoo_dir, tmp_path):
    folder = _copy(zoo_dir, tmp_path)
    w = np.load(folder / "weights.npy")
    np.save(folder / "weights.npy", np.concatenate([w, w[:, :1]], axis=1))
    config.zoo.source = str(folder)
    _refused(config, "hold 4971 numbers but layout.csv describes 4970.*files of one zoo")


def test_weights_that_are_not_an_array(config, zoo_dir, tmp_path):
    folder = _copy(zoo_dir, tmp_path)
    (folder / "weights.npy").write_text("not an array")
    config.zoo.source = str(folder)
    _refused(config, "weights.npy is not a NumPy .npy array")


@pytest.mark.parametrize("change,match", [
    (dict(width=8), r"gives params/conv1/bias the shape \(16,\), the model has \(8,\)"),
    (dict(depth=2), r"small_cnn_zoo \(model.kwargs.depth=2\) has 2 convolutions"),
])
def test_layout_that_does_not_fit_the_model(config, change, match):
    config.model.kwargs.update(change)
    _refused(config, match)


def test_layout_for_other_input_channels(config):
    config.data.channels = 3
    _refused(config, "read 1-channel images .*the data gives 3: set --config.data.channels=1")


@pytest.mark.parametrize("edit,match", [
    (lambda rows: rows.__setitem__(3, rows[3].replace(",160,176,", ",150,176,")),
     "spans columns 150..176"),
    (lambda rows: rows.__setitem__(2, rows[2].replace('"(3, 3, 1, 16)"', "three")),
     "line 3 is not 'varname, start_idx, end_idx, shape'"),
    (lambda rows: rows.__setitem__(0, rows[0].replace("varname", "name")),
     r"lacks the column\(s\) \['varname'\]"),
])
def test_malformed_layout(config, zoo_dir, tmp_path, edit, match):
    folder = _copy(zoo_dir, tmp_path)
    lines = (folder / "layout.csv").read_text().splitlines()
    edit(lines)
    (folder / "layout.csv").write_text("\n".join(lines) + "\n")
    config.zoo.source = str(folder)
    _refused(config, match)


def test_nan_rows_are_named_with_the_fix(config):
    config.zoo.source_filter = "activation=relu,step=86"   # no 'finite'
    first = _refused(config, "hold NaN or inf parameters")
    assert "row 199" in first and "finite" in first


def test_no_row_left_after_the_filter(config):
    config.zoo.source_filter = "activation=relu,step=87"
    first = _refused(config, "no row of the 200 left")
    assert "config.activation=relu: 136" in first and "step=87: 0" in first


def test_rows_of_another_activation(config):
    config.zoo.source_filter = "activation=tanh,step=86"
    _refused(config, "use --config.model.kwargs.activation=tanh")
    config.zoo.source_filter = "step=86,finite"
    _refused(config, "mix activations relu, tanh; small_cnn_zoo has one: add activation=relu")


def test_rows_of_another_data_set(config, zoo_dir, tmp_path):
    folder = _copy(zoo_dir, tmp_path)
    _rewrite_metrics(folder, lambda row: row.update({"config.dataset": "fashion_mnist"}))
    config.zoo.source = str(folder)
    config.zoo.source_filter = "activation=relu,step=86,finite"
    _refused(config, "trained on 'fashion_mnist', but data.name='mnist'.*fashion_mnist")


@pytest.mark.parametrize("text,match", [
    ("step=>86", "cannot read 'step=>86'"),
    ("optimizer=sgd", "has no column 'optimizer'; its columns: "),
    ("activation>relu", "compares text"),
])
def test_bad_filter(config, text, match):
    config.zoo.source_filter = text
    _refused(config, match)


def test_source_settings_that_do_not_combine(config):
    config.zoo.mode, config.zoo.align = "subset", "none"   # (aligning needs seed mode too)
    _refused(config, "zoo.mode must be 'seed' with zoo.source", ConfigError)
    config.zoo.mode, config.zoo.selector = "seed", "params/dense/.*"
    _refused(config, "zoo.selector must take every variable")
    config.zoo.selector, config.zoo.source = ".*", ""
    _refused(config, "zoo.source must be the zoo to import", ConfigError)


def test_a_zoo_for_another_model(config):
    config.model.name, config.model.kwargs = "mlp3", {}
    _refused(config, "use --config.model.name=small_cnn_zoo")


def test_stored_accuracies_that_disagree_are_named(config, zoo_dir, tmp_path):
    """A source whose metrics lie fails the collect stage, before the generator trains."""
    from pdiff_jax.pipeline import run_pipeline

    folder = _copy(zoo_dir, tmp_path)
    lie = {"cnn_zoo/run_04/permanent_ckpt-86", "cnn_zoo/run_07/permanent_ckpt-86"}
    _rewrite_metrics(folder, lambda row: row.update(
        {"test_accuracy": "0.5"} if row[""] in lie else {}))
    config.zoo.source = str(folder)
    with pytest.raises(MismatchError, match=r"2 of 16 imported networks disagree") as e:
        run_pipeline(config, tmp_path / "run", stages=["collect"])
    assert "row 39 (50.00 stored" in str(e.value) and "row 63 (50.00 stored" in str(e.value)
    assert not (tmp_path / "run" / "zoo").exists()


# ----------------------------------------------------------------------------- layout order


def test_layout_order_is_read_from_layout_csv(scz, config, zoo_dir, tmp_path):
    """Kernel-first columns and shuffled layout lines import to the same vectors."""
    from pdiff_jax.models import get_model
    from pdiff_jax.zoo.settings import ZooSettings
    from pdiff_jax.zoo.sources import import_zoo

    folder = _copy(zoo_dir, tmp_path)
    variables = scz.keras_variables()
    kernel_first = [v for pair in zip(variables[1::2], variables[::2], strict=True) for v in pair]
    old, new = scz.layout_rows(variables), scz.layout_rows(kernel_first)
    w = np.load(folder / "weights.npy")
    where = {name: (a, b) for name, a, b, _ in old}
    np.save(folder / "weights.npy",
            np.concatenate([w[:, slice(*where[name])] for name, *_ in new], axis=1))
    lines = [f"{name},{a},{b},\"{tuple(shape)}\"" for name, a, b, shape in new]
    (folder / "layout.csv").write_text("\n".join(["varname,start_idx,end_idx,shape",
                                                  *lines[::-1]]) + "\n")
    model = get_model("small_cnn_zoo", num_classes=10, input_shape=(28, 28, 1))
    data = SimpleNamespace(name="mnist", mean=(0.1307,), std=(0.3081,))
    settings = ZooSettings.from_section(config.zoo)
    a = import_zoo(settings, model, data, seed=0)
    b = import_zoo(ZooSettings.from_section(dict(config.zoo.to_dict(), source=str(folder))),
                   model, data, seed=0)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert a.members == b.members
