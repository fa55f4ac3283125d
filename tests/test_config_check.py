"""config_check: every rule refuses its bad value in one line naming field, value and fix;
every shipped config (with each of its arguments) passes."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from pdiff_jax.config import check as cc
from pdiff_jax.config.check import ConfigError, SelectorError, WorkdirError, validate_config
from pdiff_jax.config.defaults import get_config
from pdiff_jax.data.catalog import DataFormatError, DataMissingError
from pdiff_jax.params.subset import SubsetError

ROOT = Path(__file__).resolve().parent.parent

# Every config file and the arguments its docstring offers (a new file must be added here).
SHIPPED = {
    "default": [None, "smoke"],
    "mlp3": [None, "smoke", "cifar10", "cifar10,smoke"],
    "convnet3": [None, "mnist", "smoke"],
    "resnet18": [None, "smoke", "cifar10"],
    "paper": [None, "smoke", "mlp3", "convnet3", "text_noise"],
    "conditional": [None, "smoke", "value", "align"],
    "size_ladder": [None, "smoke", "resnet18_w8", "resnet18_w8,smoke"],
}


def _load(name: str, arg: str | None) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _with(config: ml_collections.ConfigDict, path: str, value) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``path`` set to ``value`` of any type (as a library user can)."""
    d = config.to_dict()
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[last] = value
    return ml_collections.ConfigDict(d)


def _smoke(tfds_dir, **fields) -> ml_collections.ConfigDict:
    config = get_config("smoke")
    config.data.data_dir = str(tfds_dir)
    for path, value in fields.items():
        config = _with(config, path.replace("__", "."), value)
    return config


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text, text
    return text


# ----------------------------------------------------------------------------- shipped configs


def test_every_config_file_is_listed():
    assert sorted(p.stem for p in (ROOT / "configs").glob("*.py")) == sorted(SHIPPED)


@pytest.mark.parametrize("name, arg", [(n, a) for n, args in SHIPPED.items() for a in args],
                         ids=lambda x: str(x))
def test_shipped_configs_validate_clean(name, arg, tmp_path, monkeypatch):
    # TFDS data sets (CIFAR) are not on this machine: record which would be required
    # instead, so everything else (values, model, selector on its real shapes) is checked.
    from pdiff_jax.data import tfds_source

    required = []
    monkeypatch.setattr(tfds_source, "require_builder", lambda n, d: required.append(n))
    config = _load(name, arg)
    validate_config(config, workdir=tmp_path / "wd")
    expected = [] if config.data.name in ("mnist", "bundled_mnist") else [config.data.name]
    assert required == expected
    assert not (tmp_path / "wd").exists()  # checking creates nothing


def test_shipped_tfds_config_without_its_data_names_the_command(tmp_path, no_network):
    config = _with(_load("resnet18", None), "data.data_dir", str(tmp_path))
    with pytest.raises(DataMissingError, match=f"tfds build cifar100 --data_dir {tmp_path}"):
        validate_config(config)
    assert no_network == []


# ----------------------------------------------------------------------------- one rule each

_DEFAULTS = get_config()


def _default(path):
    node = _DEFAULTS
    for p in path.split("."):
        node = node[p]
    return node


def _table_cases():
    """(field, bad value, requirement) for every field of the rule tables."""
    for path in cc.POSITIVE_INTS:
        yield path, 0, "a positive integer"
        yield path, -3, "a positive integer"
        yield path, 2.5, "a positive integer"
    for path in cc.NONNEGATIVE_INTS:
        yield path, -1, "an integer >= 0"
    for path in cc.POSITIVE_NUMBERS:
        yield path, 0.0, "a positive number"
        yield path, float("nan"), "a positive number"
    for path in cc.NONNEGATIVE_NUMBERS:
        yield path, -0.1, "a number >= 0"
    for path in cc.UNIT_INTERVAL:
        yield path, 1.0, "in [0, 1)"
    for path in cc.POSITIVE_INT_TUPLES:
        yield path, (), "a non-empty tuple of positive integers"
        yield path, (8, 0), "a non-empty tuple of positive integers"
    for path in cc.BOOLS:
        yield path, 1, "True or False"


@pytest.mark.parametrize("path, value, requirement", list(_table_cases()), ids=str)
def test_each_value_rule_names_field_value_and_fix(path, value, requirement, tfds_dir):
    config = _with(_smoke(tfds_dir), path, value)
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    expected = (f"{path} must be {requirement}, got {value!r}; "
                f"e.g. --config.{path}=")
    assert _one_line(info.value).startswith(expected), str(info.value)
    # The example is the default value, so it passes the same rule.
    assert str(info.value).endswith("e.g. " + cc.flag(path, _default(path)))
    validate_config(_with(config, path, _default(path)))


@pytest.mark.parametrize("path", sorted(cc.CHOICES))
def test_each_choice_rule_lists_the_choices(path, tfds_dir):
    choices = cc.CHOICES[path]
    bad = "nonsense" if isinstance(choices[0], str) else 2
    with pytest.raises(ConfigError) as info:
        validate_config(_with(_smoke(tfds_dir), path, bad))
    listed = ", ".join(repr(c) for c in choices)
    assert _one_line(info.value).startswith(f"{path} must be one of {listed}, got {bad!r}; ")
    companion = {"generator.sampling.sampler": ("generator.sampling.steps", 0),  # ddpm: all T
                 "generator.condition.kind": ("generator.condition.levels", (0, 50, 100))}
    for choice in choices:  # every listed choice is accepted by the checker
        config = _with(_smoke(tfds_dir), path, choice)
        validate_config(_with(config, *companion[path]) if path in companion else config)


def test_a_typo_in_a_choice_gets_a_did_you_mean(tfds_dir):
    with pytest.raises(ConfigError, match=r"^zoo.optimizer must be one of 'sgd', 'adam', "
                                          r"'adamw', got 'adan'; did you mean "
                                          r"--config.zoo.optimizer=adam\?$"):
        validate_config(_smoke(tfds_dir, zoo__optimizer="adan"))


@pytest.mark.parametrize("n", [0, -3])
def test_issue_16_num_models(n, tfds_dir):
    with pytest.raises(ConfigError, match=rf"^zoo.num_models must be a positive integer, got {n}; "
                                          r"e.g. --config.zoo.num_models=200$"):
        validate_config(_smoke(tfds_dir, zoo__num_models=n))


@pytest.mark.parametrize("fields, match", [
    ({"zoo__milestones": (0.75, 0.5)}, r"^zoo.milestones must be increasing fractions of training "
                                       r"in \(0, 1\), got \(0.75, 0.5\); e.g. "
                                       r"--config.zoo.milestones='\(0.5, 0.75\)'$"),
    ({"zoo__milestones": (0.5, 1.5)}, r"^zoo.milestones must be increasing fractions"),
    ({"zoo__selector": "params/(bn"}, r"^zoo.selector must be valid regexes \('params/\(bn': "
                                      r"missing \), unterminated subpattern"),
    ({"zoo__selector": ()}, r"^zoo.selector must be a regex or a non-empty tuple of regexes"),
    ({"zoo__init_from": "/no/such/weights.pth"},
     r"^zoo.init_from must be '' or the path of an existing .safetensors/.pth file, got "
     r"'/no/such/weights.pth'; fix the path, or --config.zoo.init_from='' "),
    ({"generator__autoencoder__model__min_len": 40},
     r"^generator.autoencoder.model.min_len must be a multiple of 16, got 40; e.g. "
     r"--config.generator.autoencoder.model.min_len=32$"),
    ({"generator__autoencoder__model__min_len": 64, "generator__autoencoder__model__max_len": 32},
     r"^generator.autoencoder.model.min_len must be <= generator.autoencoder.model.max_len = 32"),
    ({"generator__diffusion__process__beta_end": 1.5},
     r"^generator.diffusion.process.beta_end must be in \(0, 1\), got 1.5"),
    ({"generator__diffusion__process__beta_start": 0.1},
     r"^generator.diffusion.process.beta_start must be <= beta_end = 0.02, got 0.1"),
    ({"evaluate__noise_amplitudes": (0.01, -0.1)},
     r"^evaluate.noise_amplitudes must be a tuple of positive numbers"),
    ({"generator__sampling__sampler": "ddpm", "generator__sampling__steps": 10},
     r"^generator.sampling.steps must be 0 for sampler 'ddpm' \(it runs all T = 1000 steps\), "
     r"got 10; use --config.generator.sampling.steps=0, or "
     r"--config.generator.sampling.sampler=ddim for 10 steps$"),
    ({"generator__sampling__steps": 2000},
     r"^generator.sampling.steps must be at most T = 1000 \(generator.diffusion.process."
     r"num_timesteps\) for sampler 'ddim', got 2000; e.g. --config.generator.sampling.steps=50$"),
    ({"generator__sampling__steps": -1},
     r"^generator.sampling.steps must be an integer >= 0, got -1"),
    ({"model__kwargs": "stem=cifar"}, r"^model.kwargs must be a dict of keyword arguments"),
    ({"model__name": 3}, r"^model.name must be a string, got 3"),
    ({"data__name": "cifar1O"},
     r"^data.name: unknown data set 'cifar1O'; known: \[.*'cifar10'.*\] or an \.npz path; "
     r"did you mean --config.data.name=cifar10\?$"),
    ({"data__name": "food101"}, r"^data.image_size must be set for 'food101' \(its images differ "
                                r"in size\), got 0; e.g. --config.data.image_size=224$"),
    ({"model__name": "resnet19"}, r"^model.name: unknown model 'resnet19'; known models: \[.*\]\. "
                                  r"Did you mean 'resnet18'\? --config.model.name=resnet18$"),
    ({"model__name": "resnet18", "model__kwargs": {"stemm": "cifar"}},
     r"^model 'resnet18' cannot be built for inputs \(28, 28, 1\) and 10 classes with "
     r"model.kwargs=\{'stemm': 'cifar'\}: .*stemm.*; fix model.kwargs"),
], ids=lambda x: str(x)[:60] if isinstance(x, dict) else "")
def test_relation_and_name_rules(fields, match, tfds_dir):
    with pytest.raises(ConfigError, match=match) as info:
        validate_config(_smoke(tfds_dir, **fields))
    _one_line(info.value)


def test_a_field_missing_from_the_config(tfds_dir):
    d = _smoke(tfds_dir).to_dict()
    del d["zoo"]["save_every"]
    with pytest.raises(ConfigError, match=r"^the config has no field zoo.save_every; start from "
                                          r"pdiff_jax.config.defaults.get_config\(\)"):
        validate_config(ml_collections.ConfigDict(d))


def test_every_config_field_has_a_rule():
    # A new config field must get a rule here (or be added to the special checks below).
    special = {"zoo.milestones", "zoo.selector", "zoo.init_from", "model.kwargs", "model.name",
               "data.name", "data.data_dir", "generator.diffusion.process.beta_start",
               "generator.diffusion.process.beta_end", "evaluate.noise_amplitudes",
               "zoo.snapshot_epochs", "generator.condition.levels"}
    covered = (set(cc.POSITIVE_INTS) | set(cc.NONNEGATIVE_INTS) | set(cc.POSITIVE_NUMBERS)
               | set(cc.NONNEGATIVE_NUMBERS) | set(cc.UNIT_INTERVAL) | set(cc.POSITIVE_INT_TUPLES)
               | set(cc.CHOICES) | set(cc.BOOLS) | special)

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "kwargs":
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    assert sorted(set(leaves(get_config().to_dict())) - covered) == []


def test_choices_match_the_modules_that_consume_them():
    from pdiff_jax.data import batches
    from pdiff_jax.generator import autoencoder, denoiser, normalize, sampling
    from pdiff_jax.zoo import training

    assert cc.NORMALIZATION_MODES == normalize.MODES
    assert cc.NORMS == autoencoder.NORMS
    assert cc.AUTOENCODER_KINDS == tuple(autoencoder.AUTOENCODERS)
    assert cc.DENOISER_KINDS == tuple(denoiser.DENOISERS)
    from pdiff_jax.zoo import alignment
    assert cc.ZOO_ALIGNS == alignment.ALIGN_METHODS
    from pdiff_jax.generator import paper_modules
    assert cc.PAPER_AE_SIZES == tuple(paper_modules.PAPER_AE_SIZES)
    assert cc.SAMPLERS == sampling.SAMPLERS
    from pdiff_jax.runtime import dispatch
    assert cc.PLACEMENTS == dispatch.PLACEMENTS
    assert cc.PRECISIONS == training.PRECISIONS
    assert cc.FOLD_MULTIPLE == 2 ** autoencoder.NUM_STAGES
    assert {a or None for a in cc.AUGMENTATIONS} == set(batches._AUGMENTATIONS)
    for optimizer in cc.OPTIMIZERS:
        for schedule in cc.SCHEDULES:
            training.make_optimizer(optimizer=optimizer, lr=0.1, total_steps=10,
                                    schedule=schedule)
    with pytest.raises(ValueError):
        training.make_optimizer(optimizer="adan", lr=0.1, total_steps=10)
    with pytest.raises(ValueError):
        training.make_optimizer(optimizer="sgd", lr=0.1, total_steps=10, schedule="linear")


# ----------------------------------------------------------------------------- selector


def test_selector_matching_nothing_is_a_config_and_a_subset_error(tfds_dir):
    config = _smoke(tfds_dir, zoo__selector="params/bn9/.*")
    with pytest.raises(SelectorError) as info:
        validate_config(config)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, SubsetError)
    assert _one_line(info.value).startswith(
        "zoo.selector: selector pattern 'params/bn9/.*' matches no variable")
    assert "Closest names: 'params/bn" in str(info.value)


def test_selector_is_checked_against_the_data_shapes(tfds_dir):
    # convnet3 on 32x32x3 inputs; an ok selector passes, one for another model does not.
    config = _load("convnet3", "mnist")
    config.data.data_dir = str(tfds_dir)
    config.zoo.align = "none"    # aligning needs the whole network (tested below)
    validate_config(_with(config, "zoo.selector", r"params/.*bn.*"))
    with pytest.raises(SelectorError, match=r"'params/layer4_1/.*' matches no variable"):
        validate_config(_with(config, "zoo.selector", r"params/layer4_1/.*"))


def test_zoo_align_needs_a_permutation_spec_and_whole_networks(tfds_dir):
    # ResNets are alignable (pdiff_jax.zoo.resnet_permutations); a partial selector is not.
    fields = dict(model__name="resnet18", model__kwargs={"width": 4}, zoo__mode="seed",
                  zoo__align="merge_many")
    validate_config(_smoke(tfds_dir, **fields, zoo__selector=""))
    with pytest.raises(ConfigError, match=r"^zoo\.selector must be every variable of the "
                       r"network for zoo\.align='merge_many' \(it permutes 'batch_stats/"):
        validate_config(_smoke(tfds_dir, **fields, zoo__selector="params/.*"))
    # The subset zoo ignores zoo.align (collect aligns seed zoos only).
    validate_config(_smoke(tfds_dir, **{**fields, "zoo__mode": "subset"},
                           zoo__selector="params/.*"))


def test_zoo_align_of_an_architecture_without_a_permutation_spec_is_refused(tfds_dir,
                                                                             monkeypatch):
    from pdiff_jax.zoo import alignment

    # As if the smoke config's cnn_bn had no spec yet.
    monkeypatch.setattr(alignment, "SEQUENTIAL_MODELS", ("mlp3", "convnet3"))
    config = _smoke(tfds_dir, zoo__mode="seed", zoo__selector="", zoo__align="weight_matching")
    assert config.model.name == "cnn_bn"
    with pytest.raises(ConfigError, match=r"^zoo\.align='weight_matching': weight matching "
                       r"knows the permutation structure of .*not 'cnn_bn'; use zoo.align='none'"):
        validate_config(config)
    validate_config(_with(config, "zoo.align", "none"))


def test_recomputing_batch_stats_needs_vectors_that_hold_them(tfds_dir):
    # The default subset (scales and biases of two BatchNorms) holds no statistics.
    with pytest.raises(ConfigError, match=r"^evaluate\.recompute_batch_stats must be 0 when "
                       r"the generated vectors hold no BatchNorm statistics \(model 'cnn_bn', "
                       r"zoo\.mode='subset'.*use --config\.evaluate\.recompute_batch_stats=0"):
        validate_config(_smoke(tfds_dir, evaluate__recompute_batch_stats=500))
    validate_config(_smoke(tfds_dir, zoo__mode="seed", zoo__selector="",
                           evaluate__recompute_batch_stats=500))
    with pytest.raises(ConfigError, match=r"^evaluate\.recompute_batch_stats must be 0"):
        validate_config(_smoke(tfds_dir, model__name="mlp3", zoo__mode="seed",
                               zoo__selector="", evaluate__recompute_batch_stats=500))


def test_checking_compiles_nothing(tfds_dir):
    # The model's variables come from jax.eval_shape: nothing is compiled or run.
    import jax

    events = []

    def listener(event, duration, **kwargs):
        events.append(event)

    validate_config(_smoke(tfds_dir, model__name="mlp3"))  # warm imports
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.jit(lambda x: x + 1)(np.float32(1.0))  # the listener sees a compilation
        assert any("backend_compile" in e for e in events), events
        events.clear()
        validate_config(_smoke(tfds_dir, model__name="resnet18",
                               model__kwargs={"stem": "cifar", "width": 8}))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert [e for e in events if "backend_compile" in e] == []


# ----------------------------------------------------------------------------- data


def test_missing_npz(tmp_path):
    with pytest.raises(DataMissingError, match=f"^data.name: no such .npz file: {tmp_path}/mine"
                                               r".npz; pass an existing .npz path or a known data "
                                               r"set, e.g. --config.data.name=mnist$"):
        validate_config(_with(get_config("smoke"), "data.name", str(tmp_path / "mine.npz")))


def test_malformed_npz(tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataFormatError, match=r"lacks key\(s\) \['y_test'\]"):
        validate_config(_with(get_config("smoke"), "data.name", str(path)))


def test_npz_shapes_reach_the_model_check(tmp_path):
    # 12x12 gray images, 3 classes: mlp3 builds on them; the selector is checked on its variables.
    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (6, 12, 12), np.uint8),
             y_train=np.arange(6) % 3, x_test=rng.integers(0, 255, (3, 12, 12), np.uint8),
             y_test=np.arange(3))
    config = _with(_load("mlp3", "smoke"), "data.name", str(path))
    validate_config(config)
    with pytest.raises(SelectorError, match="matches no variable"):
        validate_config(_with(config, "zoo.selector", "params/conv1/.*"))


# ----------------------------------------------------------------------------- workdir


@pytest.mark.parametrize("where", ["a_file", "under_a_file"])
def test_workdir_that_cannot_be_created(where, tmp_path, tfds_dir):
    (tmp_path / "a_file").write_text("not a directory")
    wd = tmp_path / "a_file" if where == "a_file" else tmp_path / "a_file" / "run"
    with pytest.raises(WorkdirError, match=f"^cannot create workdir {wd}: .*; pass a writable "
                                           "--workdir$") as info:
        validate_config(_smoke(tfds_dir), workdir=wd)
    assert isinstance(info.value, OSError) and info.value.errno == 20  # ENOTDIR
    assert (tmp_path / "a_file").read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_workdir_under_a_read_only_directory(tmp_path, tfds_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(WorkdirError, match=f"cannot create workdir {ro}/run: {ro} is not "
                                               "writable"):
            validate_config(_smoke(tfds_dir), workdir=ro / "run")
    finally:
        ro.chmod(0o700)


def test_existing_or_creatable_workdir_passes(tmp_path, tfds_dir):
    validate_config(_smoke(tfds_dir), workdir=tmp_path)
    validate_config(_smoke(tfds_dir), workdir=tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
