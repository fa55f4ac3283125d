"""zoo.source = a folder of PyTorch state dicts, or an .npz of stacked vectors with its
ParamSpec JSON: the collect stage imports them (run_pipeline, as main runs it), and every
malformed source is refused in one line naming the file and the fix."""

from __future__ import annotations

import json
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from pdiff_jax.config.defaults import config_file
from pdiff_jax.errors import UserError
from pdiff_jax.zoo.sources import ZooSourceError

torch = pytest.importorskip("torch", reason="torch (test extra) is not installed")

WIDTH = 2   # a ResNet-18 of width 2: D = 11,274 with its BatchNorm statistics


def _refused(config, match: str, error=UserError) -> str:
    from pdiff_jax.config.check import validate_config

    with pytest.raises(error, match=match) as e:
        validate_config(config)
    first = str(e.value).splitlines()[0]
    assert first.startswith("zoo."), first
    return first


def _collect(config, workdir):
    """The collect stage as main runs it; the stored zoo."""
    from pdiff_jax.pipeline import run_pipeline
    from pdiff_jax.run import open_run

    run_pipeline(config, workdir, stages=["collect"])
    return open_run(workdir).zoo


# ----------------------------------------------------------------------------- state dicts


def _torch_layout(path: str, array: np.ndarray) -> np.ndarray:
    if path.endswith("/kernel"):
        return array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
    return array


@pytest.fixture(scope="module")
def resnets():
    """(model, [flat Flax variables of 3 ResNet-18s]): the networks the folder holds."""
    from pdiff_jax.models import get_model
    from pdiff_jax.params.subset import named_leaves

    model = get_model("resnet18", num_classes=10, input_shape=(28, 28, 1), width=WIDTH)
    shapes = named_leaves(jax.eval_shape(model.init, jax.random.key(0)))
    rng = np.random.default_rng(0)
    # Random numbers of the right shapes (no init to compile); variances positive.
    nets = [{p: (np.abs(x) if p.endswith("/var") else 0.1 * x).astype(np.float32)
             for p, x in ((p, rng.standard_normal(s.shape)) for p, s in shapes.items())}
            for _ in range(3)]
    return model, nets


def _write_state_dicts(folder, nets, *, drop=None, nan=None):
    """net_0.pth (wrapped as a Lightning-style checkpoint), net_1.pth, net_2.safetensors."""
    from safetensors.numpy import save_file

    from pdiff_jax.models.convert import resnet_torch_name

    folder.mkdir(parents=True, exist_ok=True)
    for i, flat in enumerate(nets):
        state = {resnet_torch_name(p): np.ascontiguousarray(_torch_layout(p, a))
                 for p, a in flat.items()}
        if drop is not None and i == drop[0]:
            del state[drop[1]]
        if nan == i:
            state["fc.bias"] = np.full_like(state["fc.bias"], np.nan)
        if i == 2:
            save_file(state, str(folder / f"net_{i}.safetensors"))
        else:
            tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
            torch.save({"state_dict": tensors} if i == 0 else tensors, folder / f"net_{i}.pth")
    return folder


@pytest.fixture
def resnet_config(scz, tmp_path, tfds_dir, monkeypatch, resnets):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    c = config_file(scz.ROOT / "configs" / "default.py", "smoke")
    c.model.name, c.model.kwargs = "resnet18", {"width": WIDTH}
    c.zoo.update(mode="seed", selector=".*",
                 source=str(_write_state_dicts(tmp_path / "nets", resnets[1])))
    c.data.update(max_train=200, max_test=100)
    c.evaluate.update(train_examples=100, vectorize="map")   # compiles one ResNet, not 100
    return c


def test_a_folder_of_state_dicts_is_the_zoo(resnet_config, resnets, tmp_path):
    zoo = _collect(resnet_config, tmp_path / "run")
    assert zoo.meta["source"]["files"] == ["net_0.pth", "net_1.pth", "net_2.safetensors"]
    assert zoo.num_models == 3 and zoo.split_point is None and np.all(np.isfinite(zoo.test_acc))
    assert set(zoo.spec.names) == set(resnets[1][0])   # every variable, statistics included
    for k, flat in enumerate(resnets[1]):   # each file's every tensor, where the spec says
        for name, offset, size in zip(zoo.spec.names, zoo.spec.offsets, zoo.spec.segments,
                                      strict=True):
            np.testing.assert_array_equal(zoo.vectors[k, offset:offset + size],
                                          flat[name].reshape(-1), err_msg=f"{k} {name}")


def test_state_dict_that_does_not_fit_is_named_by_the_check(resnet_config, resnets, tmp_path):
    folder = _write_state_dicts(tmp_path / "bad", resnets[1], drop=(0, "layer1.0.bn1.weight"))
    resnet_config.zoo.source = str(folder)
    first = _refused(resnet_config, "net_0.pth does not fit model.name='resnet18'")
    assert "1 missing keys" in first and "width, stem" in first


def test_other_width_is_refused(resnet_config):
    resnet_config.model.kwargs = {"width": 4}
    _refused(resnet_config, "shape mismatches")


def test_a_later_file_that_does_not_fit_stops_the_collect_stage(resnet_config, resnets,
                                                                tmp_path):
    folder = _write_state_dicts(tmp_path / "bad", resnets[1], drop=(2, "fc.bias"))
    resnet_config.zoo.source = str(folder)
    with pytest.raises(ZooSourceError, match=r"net_2\.safetensors does not fit"):
        _collect(resnet_config, tmp_path / "run")
    assert not (tmp_path / "run" / "zoo").exists()


def test_nan_state_dict(resnet_config, resnets, tmp_path):
    resnet_config.zoo.source = str(_write_state_dicts(tmp_path / "nan", resnets[1], nan=0))
    _refused(resnet_config, r"hold NaN or inf parameters \(net_0.pth\); remove that file")


def test_unreadable_file_and_other_architectures(resnet_config, tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.pth").write_text("not a checkpoint")
    resnet_config.zoo.source = str(folder)
    _refused(resnet_config, "a.pth is not a readable PyTorch state dict")
    resnet_config.model.name, resnet_config.model.kwargs = "mlp3", {}
    _refused(resnet_config, r"convert for resnet\*, vit\*, convnext\* .*not model.name='mlp3'")


def test_filter_and_empty_folder(resnet_config, tmp_path):
    resnet_config.zoo.source_filter = "step=86"
    _refused(resnet_config, "a folder of state dicts is taken whole")
    resnet_config.zoo.source_filter = ""
    (tmp_path / "empty").mkdir()
    resnet_config.zoo.source = str(tmp_path / "empty")
    _refused(resnet_config, "is none of the importable formats")


# ----------------------------------------------------------------------------- .npz


@pytest.fixture(scope="module")
def imported_scz(scz, tmp_path_factory, tfds_dir):
    """The fixture Small CNN Zoo's final ReLU networks as an importer reads them."""
    from pdiff_jax.models import get_model
    from pdiff_jax.zoo.settings import ZooSettings
    from pdiff_jax.zoo.sources import import_zoo

    folder = scz.zoo_folder(tmp_path_factory.getbasetemp() / "small_cnn_zoo", tfds_dir)
    config = config_file(scz.ROOT / "configs" / "small_cnn_zoo.py", "smoke")
    config.zoo.source = str(folder)
    model = get_model("small_cnn_zoo", num_classes=10, input_shape=(28, 28, 1))
    data = SimpleNamespace(name="mnist", mean=(0.1307,), std=(0.3081,))
    return import_zoo(ZooSettings.from_section(config.zoo), model, data, seed=0)


def _write_npz(path, imported, *, acc=True, spec_json=True, order=slice(None, None, -1)):
    """The vectors with their leaves in another order (reversed), as another tool might."""
    from pdiff_jax.params.subset import ParamSpec

    spec = imported.spec
    names = list(spec.names)[order]
    where = dict(zip(spec.names, zip(spec.offsets, spec.segments, strict=True), strict=True))
    columns = np.concatenate([np.arange(o, o + n) for o, n in (where[m] for m in names)])
    arrays = {"vectors": imported.vectors[:, columns]}
    if acc:
        arrays["test_acc"] = imported.stored_test_acc
    np.savez(path, **arrays)
    if spec_json:
        shapes = dict(zip(spec.names, spec.shapes, strict=True))
        saved = ParamSpec(tuple(names), tuple(shapes[m] for m in names), ("float32",) * len(names))
        path.with_suffix(".json").write_text(json.dumps(saved.to_json()))
    return path


@pytest.fixture
def npz_config(scz, tmp_path, tfds_dir, monkeypatch, imported_scz):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    c = config_file(scz.ROOT / "configs" / "small_cnn_zoo.py", "smoke")
    # Unaligned: the members must come back exactly as the .npz holds them.
    c.zoo.update(source=str(_write_npz(tmp_path / "zoo.npz", imported_scz)), source_filter="",
                 align="none")
    return c


def test_an_npz_is_the_zoo_with_its_stored_accuracies_checked(npz_config, imported_scz,
                                                              tmp_path):
    zoo = _collect(npz_config, tmp_path / "run")
    np.testing.assert_array_equal(zoo.vectors, imported_scz.vectors)
    assert zoo.meta["source"]["format"] == "npz"
    np.testing.assert_allclose(zoo.meta["source"]["stored_test_acc"], zoo.test_acc, atol=0.01)


def test_npz_refusals(npz_config, imported_scz, tmp_path):
    path = tmp_path / "zoo.npz"
    path.with_suffix(".json").unlink()
    _refused(npz_config, r"has no ParamSpec JSON beside it \(.*zoo.json\)")
    _write_npz(path, imported_scz)
    spec = json.loads(path.with_suffix(".json").read_text())
    spec["shapes"][0] = [10, 17]
    spec.pop("size")
    path.with_suffix(".json").write_text(json.dumps(spec))
    _refused(npz_config, "rows of .*zoo.npz hold 4970 numbers but zoo.json describes 4980")
    _write_npz(path, imported_scz, order=slice(1, None))   # the spec leaves out a variable
    np.savez(path, vectors=np.load(path)["vectors"][:, :4960])
    _refused(npz_config, "zoo.json lacks params/conv1/bias")
    v = imported_scz.vectors.copy()
    v[3, 7] = np.inf
    _write_npz(path, SimpleNamespace(spec=imported_scz.spec, vectors=v, stored_test_acc=None),
               acc=False)
    _refused(npz_config, r"hold NaN or inf parameters \(row 3\); remove those rows")
    np.savez(path, weights=v)
    _refused(npz_config, "has no array 'vectors'")
    npz_config.zoo.source_filter = "step=86"
    _refused(npz_config, "an .npz is taken whole")


def test_stored_accuracy_tolerance():
    from pdiff_jax.errors import MismatchError
    from pdiff_jax.zoo.sources.imported import allowed_difference, check_stored_accuracies

    stored = np.array([90.0, 50.0, np.nan], np.float32)
    np.testing.assert_allclose(allowed_difference(stored, tolerance=1.0, n_test=10000,
                                                  subset=False)[:2], [1.0, 1.0])
    # A 500-image subset: 3 binomial standard errors on top (p = 0.9: 3 * 1.34 points).
    np.testing.assert_allclose(allowed_difference(stored, tolerance=1.0, n_test=500,
                                                  subset=True)[:2], [5.025, 7.708], atol=1e-3)
    check_stored_accuracies(stored, [90.9, 49.5, 3.0], ["a", "b", "c"], tolerance=1.0,
                            n_test=10000, subset=False)   # NaN stored: not compared
    with pytest.raises(MismatchError, match=r"1 of 3 .* b \(50.00 stored, 52.00 measured\)"):
        check_stored_accuracies(stored, [90.9, 52.0, 3.0], ["a", "b", "c"], tolerance=1.0,
                                n_test=10000, subset=False)


def test_filter_clauses():
    from pdiff_jax.zoo.sources.row_filter import Clause, parse_filter, passes, select_rows

    clauses = parse_filter(" dataset=mnist, step>=20 ,finite,test_accuracy<0.5")
    assert clauses == (Clause("config.dataset", "=", "mnist"), Clause("step", ">=", "20"),
                       Clause("finite", "", ""), Clause("test_accuracy", "<", "0.5"))
    table = {"config.dataset": np.array(["mnist", "svhn", "mnist"]),
             "step": np.array(["3", "20", "86"]), "test_accuracy": np.array(["0.1", "", "0.9"])}
    np.testing.assert_array_equal(select_rows(clauses, table, 3, "m"), [False, False, False])
    np.testing.assert_array_equal(passes(Clause("step", "!=", "20"), table["step"], "m"),
                                  [True, False, True])
    assert parse_filter("") == ()
