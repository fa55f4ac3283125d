"""The whole config checked before any work (pdiff_jax.config.check): every rule refuses
its bad value in one line naming field, value and fix; every shipped config (with each of
its arguments) passes. The data and model checks are in test_inputs.py, the workdir's in
test_workdir.py."""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np
import pytest

from pdiff_jax.config import check as cc
from pdiff_jax.config.check import ConfigError, validate_config
from pdiff_jax.config.defaults import get_config

ROOT = Path(__file__).resolve().parents[2]

# Every config file and the arguments its docstring offers (a new file must be added here).
SHIPPED = {
    "default": [None, "smoke"],
    "mlp3": [None, "smoke", "cifar10", "cifar10,smoke"],
    "convnet3": [None, "mnist", "smoke", "mnist,label_term"],
    "resnet18": [None, "smoke", "cifar10"],
    "paper": [None, "smoke", "mlp3", "convnet3", "text_noise"],
    "conditional": [None, "smoke", "value", "unaligned"],
    "size_ladder": [None, "smoke", "resnet18_w8", "resnet18_w8,smoke", "cnn_bn,label_term"],
    "resnet18_whole": [None, "smoke", "w8", "w16", "w32", "w8,smoke"],
    # Needs a zoo to import (--config.zoo.source=PATH): checked in tests/zoo/.
    "small_cnn_zoo": [],
}


# ----------------------------------------------------------------------------- shipped configs


def test_every_config_file_is_listed():
    assert sorted(p.stem for p in (ROOT / "configs").glob("*.py")) == sorted(SHIPPED)


@pytest.mark.parametrize("name, arg", [(n, a) for n, args in SHIPPED.items() for a in args],
                         ids=lambda x: str(x))
def test_shipped_configs_validate_clean(name, arg, tmp_path, monkeypatch, shipped_config):
    # TFDS data sets (CIFAR) are not on this machine: record which would be required
    # instead, so everything else (values, model, selector on its real shapes) is checked.
    from pdiff_jax.data import tfds_source

    required = []
    monkeypatch.setattr(tfds_source, "require_builder", lambda n, d: required.append(n))
    config = shipped_config(name, arg)
    validate_config(config, workdir=tmp_path / "wd")
    expected = [] if config.data.name in ("mnist", "bundled_mnist") else [config.data.name]
    assert required == expected
    assert not (tmp_path / "wd").exists()  # checking creates nothing


@pytest.mark.parametrize("name, arg, model", [("convnet3", "mnist,label_term", "convnet3"),
                                              ("size_ladder", "cnn_bn,label_term", "cnn_bn")])
def test_label_term_is_the_batch_norm_convnet_recipe_and_only_when_asked(name, arg, model,
                                                                         shipped_config):
    config = shipped_config(name, arg)
    term = config.generator.autoencoder.behaviour
    assert config.model.name == model
    assert (term.weight, term.target, term.members, term.images_per_step, term.warmup,
            term.vectorize) == (1.0, "labels", 16, 64, 0.5, "loop")
    plain = shipped_config(name, arg.replace(",label_term", ""))
    assert plain.generator.autoencoder.behaviour.weight == 0.0


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
def test_each_value_rule_names_field_value_and_fix(path, value, requirement, smoke_config,
                                                   config_with, one_line):
    config = config_with(smoke_config(), path, value)
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    expected = (f"{path} must be {requirement}, got {value!r}; "
                f"e.g. --config.{path}=")
    assert one_line(info.value).startswith(expected), str(info.value)
    # The example is the default value, so it passes the same rule.
    assert str(info.value).endswith("e.g. " + cc.flag(path, _default(path)))
    fixed = config_with(config, path, _default(path))
    if path in ("evaluate.num_generated", "evaluate.num_baseline"):   # equal draws: both
        for other in ("evaluate.num_generated", "evaluate.num_baseline"):
            fixed = config_with(fixed, other, _default(path))
    validate_config(fixed)


@pytest.mark.parametrize("path", sorted(cc.CHOICES))
def test_each_choice_rule_lists_the_choices(path, smoke_config, config_with, one_line):
    choices = cc.CHOICES[path]
    bad = "nonsense" if isinstance(choices[0], str) else 2
    with pytest.raises(ConfigError) as info:
        validate_config(config_with(smoke_config(), path, bad))
    listed = ", ".join(repr(c) for c in choices)
    assert one_line(info.value).startswith(f"{path} must be one of {listed}, got {bad!r}; ")
    companion = {"generator.sampling.sampler": ("generator.sampling.steps", 0),  # ddpm: all T
                 "generator.condition.kind": ("generator.condition.levels", (0, 50, 100)),
                 "zoo.align": ("zoo.mode", "seed")}   # only seed zoos are aligned
    for choice in choices:  # every listed choice is accepted by the checker
        config = config_with(smoke_config(), path, choice)
        validate_config(config_with(config, *companion[path]) if path in companion else config)


def test_a_typo_in_a_choice_gets_a_did_you_mean(smoke_config):
    with pytest.raises(ConfigError, match=r"^zoo.optimizer must be one of 'sgd', 'adam', "
                                          r"'adamw', got 'adan'; did you mean "
                                          r"--config.zoo.optimizer=adam\?$"):
        validate_config(smoke_config(zoo__optimizer="adan"))


@pytest.mark.parametrize("n", [0, -3])
def test_issue_16_num_models(n, smoke_config):
    with pytest.raises(ConfigError, match=rf"^zoo.num_models must be a positive integer, got {n}; "
                                          r"e.g. --config.zoo.num_models=200$"):
        validate_config(smoke_config(zoo__num_models=n))


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
def test_relation_and_name_rules(fields, match, smoke_config, one_line):
    with pytest.raises(ConfigError, match=match) as info:
        validate_config(smoke_config(**fields))
    one_line(info.value)


def test_a_field_missing_from_the_config(smoke_config):
    d = smoke_config().to_dict()
    del d["zoo"]["save_every"]
    with pytest.raises(ConfigError, match=r"^the config has no field zoo.save_every; start from "
                                          r"pdiff_jax.config.defaults.get_config\(\)"):
        validate_config(ml_collections.ConfigDict(d))


def test_every_config_field_has_a_rule():
    # A new config field must get a rule here (or be added to the special checks below).
    special = {"zoo.milestones", "zoo.selector", "zoo.init_from", "model.kwargs", "model.name",
               "data.name", "data.data_dir", "generator.diffusion.process.beta_start",
               "generator.diffusion.process.beta_end", "evaluate.noise_amplitudes",
               "zoo.snapshot_epochs", "generator.condition.levels",
               "zoo.source", "zoo.source_filter",   # config/zoo_source.py
               *(f"evaluate.frontier.{f}" for f in (   # _check_frontier
                   "enabled", "noise", "interpolation", "dirichlet", "pca_gaussian",
                   "finetune", "finetune_members", "pdiff", "pdiff_knob"))}
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


def test_the_modules_that_consume_a_choice_take_every_allowed_value_and_refuse_others():
    from pdiff_jax.config import choices
    from pdiff_jax.data import batches
    from pdiff_jax.generator import autoencoder, paper_modules, registry
    from pdiff_jax.runtime.optimizer import make_optimizer

    # The generator's kind tables name exactly the allowed kinds (checked at import too).
    assert tuple(registry.AUTOENCODERS) == choices.AUTOENCODER_KINDS
    assert tuple(registry.DENOISERS) + tuple(registry.LATENT_FITS) == \
        choices.DIFFUSION_MODEL_KINDS
    assert tuple(paper_modules.PAPER_AE_SIZES) == choices.PAPER_AE_SIZES
    assert cc.FOLD_MULTIPLE == 2 ** autoencoder.NUM_STAGES
    x, y = np.zeros((8, 8, 8, 1), np.float32), np.zeros(8, np.int32)
    for augment in choices.AUGMENTATIONS:   # '' (none) and each augmentation
        next(batches.iterate_batches(x, y, 8, seed=0, augment=augment or None))
    with pytest.raises(ValueError, match="augment must be one of"):
        next(batches.iterate_batches(x, y, 8, seed=0, augment="mixup"))
    for optimizer in choices.OPTIMIZERS:
        for schedule in choices.SCHEDULES:
            make_optimizer(optimizer=optimizer, lr=0.1, total_steps=10, schedule=schedule)
    with pytest.raises(ValueError, match="use one of"):
        make_optimizer(optimizer="adan", lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="use one of"):
        make_optimizer(optimizer="sgd", lr=0.1, total_steps=10, schedule="linear")


# ----------------------------------------------------------------------------- condition


def _condition(**fields) -> dict:
    return {f"generator__condition__{k}": v for k, v in fields.items()}


@pytest.mark.parametrize("fields, match", [
    ({"kind": "levle"}, r"did you mean --config.generator.condition.kind=level"),
    ({"guidance": 2.0}, r"no field 'guidance'; did you mean generator.condition.guidance_scale"),
    ({"kind": "level", "levels": ()}, r"at least 2 range edges"),
    ({"kind": "level", "levels": (90, 80, 100)}, r"increasing accuracy range edges"),
    ({"dropout": 1.0}, r"generator.condition.dropout must be in \[0, 1\)"),
    ({"guidance_scale": -1.0}, r"guidance_scale must be a number >= 0"),
    ({"on": "val"}, r"generator.condition.on must be one of"),
])
def test_condition_config_mistakes_are_one_clear_line(fields, match, smoke_config, one_line):
    with pytest.raises(ConfigError, match=match) as e:
        validate_config(smoke_config(**_condition(**fields)))
    one_line(e.value)


@pytest.mark.parametrize("kind", ["paper", "kde"])
def test_unconditional_denoisers_with_a_condition_are_refused(kind, smoke_config):
    config = smoke_config(**_condition(kind="level", levels=(0, 50, 100)),
                          generator__diffusion__model__kind=kind)
    with pytest.raises(ConfigError, match=f"must be 'unet'.*unconditional.*got '{kind}'"):
        validate_config(config)


def test_snapshot_epochs_are_checked(smoke_config):
    with pytest.raises(ConfigError, match=r"zoo\.snapshot_epochs must be empty unless"):
        validate_config(smoke_config(zoo__snapshot_epochs=(1, 2)))
    with pytest.raises(ConfigError, match="increasing positive epoch counts"):
        validate_config(smoke_config(zoo__mode="seed", zoo__snapshot_epochs=(2, 1)))


@pytest.mark.parametrize("fields, match", [
    ({**_condition(kind="level", levels=(0, 50, 100)), "generator__diffusion__latent_mix": 0.5},
     r"generator.diffusion.latent_mix must be 0 for generator.condition.kind='level'"),
    ({"generator__diffusion__model__kind": "kde", "generator__diffusion__latent_mix": 0.5},
     r"generator.diffusion.latent_mix must be 0 for a latent fit"),
    ({**_condition(kind="level", levels=(0, 50, 100)), "generator__sampling__latent_mix": 0.3},
     r"generator.sampling.latent_mix must be 0 for generator.condition.kind='level'"),
    ({"generator__diffusion__latent_mix": 1.5}, r"latent_mix must be in \[0, 1\)"),
    ({"generator__autoencoder__behaviour__mix": -0.1}, r"behaviour.mix must be in \[0, 1\)"),
    ({"generator__autoencoder__behaviour__target": "label"}, r"behaviour.target"),
    ({"generator__autoencoder__behaviour__warmup": 1.0}, r"behaviour.warmup must be in \[0, 1\)"),
    ({"generator__autoencoder__behaviour__warmup": 0.6, "generator__autoencoder__behaviour__ramp":
      0.5}, r"behaviour.ramp must be at most 1 - warmup = 0.4"),
])
def test_mixes_that_cannot_work_are_refused(fields, match, smoke_config, one_line):
    with pytest.raises(ConfigError, match=match) as e:
        validate_config(smoke_config(**fields))
    one_line(e.value)


def test_the_frontier_sweeps_latent_mixes_of_an_unconditional_generator(smoke_config):
    knobs = dict(evaluate__frontier__pdiff_knob="latent_mix")
    validate_config(smoke_config(**knobs, evaluate__frontier__pdiff=(0.0, 0.25, 0.5)))
    with pytest.raises(ConfigError, match=r"numbers in \[0, 1\) \(latent mixes\)"):
        validate_config(smoke_config(**knobs, evaluate__frontier__pdiff=(0.25, 1.0)))
    with pytest.raises(ConfigError, match="no condition"):
        validate_config(smoke_config(**knobs, evaluate__frontier__pdiff=(0.25,),
                                     **_condition(kind="level", levels=(0, 50, 100))))
