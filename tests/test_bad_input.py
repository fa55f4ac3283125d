"""Bad input, met the way a user meets it (``python -m pdiff_jax.main``, ``run_pipeline``,
``pdiff_jax.load``): each is one clear error that names the problem and the fix, raised
before any work is wasted, and a corrected command then runs in the same workdir.

The library-level checks behind these have their own tests (config/, data/, params/,
generator/); this file checks what reaches the user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

import pdiff_jax
from pdiff_jax import artifacts
from pdiff_jax.config.defaults import get_config
from pdiff_jax.data.catalog import DataMissingError
from pdiff_jax.generator import TrainingDivergedError, train_autoencoder, train_diffusion
from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, SubsetError, flatten_subset
from pdiff_jax.pipeline import run_pipeline
from pdiff_jax.runtime.checkpoint import write_json
from pdiff_jax.zoo.store import Zoo, save_zoo

ROOT = Path(__file__).resolve().parent.parent


def _config(tfds_dir, **overrides) -> ml_collections.ConfigDict:
    """The smoke config, smaller still, with ``section__field=value`` overrides."""
    config = get_config("smoke")
    config.data.data_dir = str(tfds_dir)
    config.data.max_train, config.data.max_test = 500, 200
    config.evaluate.train_examples = 200
    for key, value in overrides.items():
        *sections, field = key.split("__")
        node = config
        for s in sections:
            node = node[s]
        node[field] = value
    return config


# ----------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("with_config", [False, True], ids=["default_config", "config_file"])
def test_unknown_config_field_is_one_clear_line(with_config, tmp_path):
    cmd = [sys.executable, "-m", "pdiff_jax.main", f"--workdir={tmp_path / 'wd'}"]
    if with_config:
        cmd.append(f"--config={ROOT / 'configs/default.py'}:smoke")
    cmd.append("--config.zoo.num_modles=3")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "--config.zoo.num_modles: the config has no field 'num_modles'" in res.stderr
    assert 'Did you mean "num_models"' in res.stderr
    assert not (tmp_path / "wd").exists()


# ----------------------------------------------------------------------------- config values


def test_unknown_architecture_then_the_fixed_command_runs(tfds_dir, tmp_path):
    wd = tmp_path / "wd"
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*Did you mean 'resnet18'"):
        run_pipeline(_config(tfds_dir, model__name="resnet19"), wd)
    # The failed run produced nothing, so the corrected config takes the workdir over
    # (the next error is the missing zoo of --stages=sample, not "another config"), and the
    # hint is the command to run.
    with pytest.raises(ValueError, match=r"stage 'sample' needs the 'collect' stage's result.*"
                                         r"run the same command without --stages"):
        run_pipeline(_config(tfds_dir), wd, stages=["sample"])


def test_unknown_data_set_lists_the_known_ones(tfds_dir, tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set 'cifar1O'; known: \[.*'cifar10'.*"
                                         r"or an \.npz path"):
        run_pipeline(_config(tfds_dir, data__name="cifar1O"), tmp_path / "wd")


def test_selector_matching_nothing_fails_before_training(tfds_dir, tmp_path):
    wd = tmp_path / "wd"
    with pytest.raises(SubsetError, match=r"'params/bn9/.*' matches no variable.*Closest names: "
                                          r"'params/bn"):
        run_pipeline(_config(tfds_dir, zoo__selector="params/bn9/.*"), wd)
    assert not (wd / "checkpoints").exists()  # nothing was trained


@pytest.mark.parametrize("n", [0, -3])
def test_nonpositive_number_of_samples_fails_before_anything_runs(n, tfds_dir, tmp_path):
    with pytest.raises(ValueError, match=rf"evaluate.num_generated must be a positive integer, "
                                         rf"got {n}; e.g. --config.evaluate.num_generated="):
        run_pipeline(_config(tfds_dir, evaluate__num_generated=n), tmp_path / "wd")
    assert not (tmp_path / "wd").exists()


# ----------------------------------------------------------------------------- data


def test_missing_data_set_offline_names_the_command(tfds_dir, tmp_path, no_network):
    empty = tmp_path / "tfds"
    empty.mkdir()
    with pytest.raises(DataMissingError) as info:
        run_pipeline(_config(empty, data__name="cifar10"), tmp_path / "wd")
    assert f"tfds build cifar10 --data_dir {empty}" in str(info.value)
    assert no_network == []


@pytest.mark.parametrize("arrays, match", [
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(4, np.int64),
      "x_test": np.zeros((2, 8, 8), np.uint8)},
     r"lacks key\(s\) \['y_test'\]; a data set .npz needs \['x_train', 'y_train', 'x_test', "),
    ({"x_train": np.zeros((4, 64), np.uint8), "y_train": np.zeros(4, np.int64),
      "x_test": np.zeros((2, 64), np.uint8), "y_test": np.zeros(2, np.int64)},
     r"x_train has shape \(4, 64\); expected \[N, H, W\] or \[N, H, W, C\]"),
], ids=["missing_key", "wrong_shape"])
def test_bad_npz_is_named(arrays, match, tfds_dir, tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        run_pipeline(_config(tfds_dir, data__name=str(path)), tmp_path / "wd")


# ----------------------------------------------------------------------------- the workdir


@pytest.mark.parametrize("where", ["a_file", "under_a_file"])
def test_workdir_that_cannot_be_created(where, tfds_dir, tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    wd = tmp_path / "a_file" if where == "a_file" else tmp_path / "a_file" / "run"
    with pytest.raises(OSError, match=f"cannot create workdir {wd}: .*pass a writable --workdir"):
        run_pipeline(_config(tfds_dir), wd)


def test_full_disk_names_the_workdir_and_the_way_on(tfds_dir, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    # Every write to /dev/full fails with ENOSPC: the metrics log is the first file
    # a training stage appends to.
    os.symlink("/dev/full", wd / "metrics.jsonl")
    with pytest.raises(OSError, match=f"stage collect: no space left on the device of {wd}.*"
                                      "Free some space.*run the same command again") as info:
        run_pipeline(_config(tfds_dir), wd, stages=["collect"])
    assert info.value.errno == 28


# ----------------------------------------------------------------------------- divergence


def test_diverging_base_training_stops_with_the_step_and_saves_nothing(tfds_dir, tmp_path):
    wd = tmp_path / "wd"
    # An epoch of 3 steps (no loss check at every 50th): the end-of-epoch check of the
    # parameters catches it, before the checkpoint is written.
    with pytest.raises(TrainingDivergedError, match=r"base: loss became nan at epoch 1\. "
                                                    r"Lower the learning rate \(zoo.lr"):
        run_pipeline(_config(tfds_dir, zoo__lr=1e6), wd, stages=["collect"])
    assert not list((wd / "checkpoints" / "collect" / "base").glob("[0-9]*"))


def test_diverging_subset_training_stops_with_the_snapshot(tfds_dir, tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"subset snapshots: loss became nan at "
                                                    r"snapshot \d+\. Lower .*zoo.subset_lr"):
        run_pipeline(_config(tfds_dir, zoo__subset_lr=1e9), tmp_path / "wd", stages=["collect"])


# ----------------------------------------------------------------------------- generator and zoo


def _tiny_generator_config(config: ml_collections.ConfigDict) -> None:
    gen = config.generator
    gen.autoencoder.model.update(channels=(8, 8, 8, 8), min_len=16, max_len=32)
    gen.diffusion.process.num_timesteps = 20
    gen.diffusion.model.update(channels=(8, 8), time_dim=8)
    for section in (gen.autoencoder.train, gen.diffusion.train):
        section.update(steps=2, batch_size=8, log_every=1)


def _zoo(model: str, selector: str, seed: int = 0, K: int = 8) -> Zoo:
    """A zoo of ``K`` perturbed copies of one freshly initialised network (no training)."""
    md = get_model(model, num_classes=10, input_shape=(28, 28, 1))
    variables = jax.device_get(md.init(jax.random.key(seed)))
    spec = ParamSpec.from_variables(variables, selector)
    rng = np.random.default_rng(seed)
    vectors = (np.asarray(flatten_subset(variables, spec))
               + 0.01 * rng.standard_normal((K, spec.size))).astype(np.float32)
    return Zoo(variables, vectors, spec, None, np.zeros(K, np.float32), np.zeros(K, np.float32),
               dict(mode="subset", model=md.name, dataset={"name": "mnist"},
                    input_shape=[28, 28, 1], num_classes=10, config={}))


CNN_SUBSET = r"params/bn[34]/(scale|bias)"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tfds_dir):
    """A workdir holding a config, a zoo and a (barely) trained generator."""
    wd = tmp_path_factory.mktemp("trained")
    config = _config(tfds_dir)
    _tiny_generator_config(config)
    zoo = _zoo("cnn_bn", CNN_SUBSET)
    write_json(wd / "config.json", json.loads(config.to_json_best_effort(sort_keys=True)))
    save_zoo(wd / "zoo", zoo)
    gen = config.generator
    ae, meta = train_autoencoder(zoo.vectors, key=jax.random.key(0), segments=zoo.segments,
                                 normalization=gen.normalization, model=gen.autoencoder.model,
                                 train=gen.autoencoder.train)
    artifacts.save_artifact(wd / "autoencoder", ae, meta)
    artifacts.save_artifact(wd / "diffusion", *train_diffusion(
        ae["latents"], key=jax.random.key(1), process=gen.diffusion.process,
        model=gen.diffusion.model, train=gen.diffusion.train))
    return wd, config, zoo


def _with_zoo(trained, dest: Path, zoo: Zoo, model: str | None = None) -> Path:
    """The trained workdir with its zoo replaced (and, if given, the architecture)."""
    wd, config, _ = trained
    dest.mkdir()
    for name in ("autoencoder", "diffusion"):
        os.symlink(wd / name, dest / name)
    config = ml_collections.ConfigDict(config.to_dict())
    if model:
        config.model.name = model
    write_json(dest / "config.json", json.loads(config.to_json_best_effort(sort_keys=True)))
    save_zoo(dest / "zoo", zoo)
    return dest


def test_the_trained_workdir_loads(trained):
    gen = pdiff_jax.load(trained[0])
    assert gen.sample(jax.random.key(0), 2, sampler="ddim", steps=2).vectors.shape == (2, 256)


def test_generator_with_another_zoo_is_refused(trained, tmp_path):
    wd = _with_zoo(trained, tmp_path / "wd", _zoo("cnn_bn", CNN_SUBSET, seed=1))
    fix = "retrain the generator or use the zoo it was trained on"
    with pytest.raises(ValueError, match=f"zoo fingerprint .* differs .*; {fix}"):
        pdiff_jax.load(wd)
    config = ml_collections.ConfigDict(trained[1].to_dict())
    with pytest.raises(ValueError, match=f"zoo fingerprint .* differs .*; {fix}"):
        run_pipeline(config, wd, stages=["sample"])
    assert not (wd / "samples").exists()


def test_generator_with_another_architecture_is_refused(trained, tmp_path):
    wd = _with_zoo(trained, tmp_path / "wd", _zoo("mlp3", r"params/fc3/bias"), model="mlp3")
    with pytest.raises(ValueError, match=r"trained on vectors of D = 256 parameters, got D = 10: "
                                         r"the parameter subset differs; retrain the generator"):
        pdiff_jax.load(wd)


def test_nan_in_the_zoo_stops_the_generator_stage(trained, tmp_path):
    wd, config, _ = trained
    zoo = _zoo("cnn_bn", CNN_SUBSET)
    zoo.vectors[5, 3] = np.nan
    dest = tmp_path / "wd"
    dest.mkdir()
    (dest / "config.json").write_bytes((wd / "config.json").read_bytes())
    save_zoo(dest / "zoo", zoo)
    config = ml_collections.ConfigDict(config.to_dict())
    with pytest.raises(ValueError, match=r"the zoo has 1 NaN/inf values in 1 of 8 vectors "
                                         r"\(first: vector 5\); remove or re-collect"):
        run_pipeline(config, dest, stages=["autoencoder"])
    assert not (dest / "autoencoder").exists()


def test_diverging_autoencoder_stops_with_the_step(trained, tmp_path):
    config = ml_collections.ConfigDict(trained[1].to_dict())
    config.generator.normalization.mode = "none"
    zoo = _zoo("cnn_bn", CNN_SUBSET)
    zoo.vectors *= 1e30  # finite, but the squared error overflows
    dest = tmp_path / "wd"
    dest.mkdir()
    write_json(dest / "config.json", json.loads(config.to_json_best_effort(sort_keys=True)))
    save_zoo(dest / "zoo", zoo)
    with pytest.raises(TrainingDivergedError, match=r"autoencoder: loss became inf at step 1\. "
                                                    r"Try a lower learning rate"):
        run_pipeline(config, dest, stages=["autoencoder"])
    assert not (dest / "autoencoder").exists()
