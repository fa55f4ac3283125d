"""The data set and the model a config names (pdiff_jax.config.inputs), checked before any
work: the data is known and prepared, the model builds for its shapes without compiling
anything, and the selector matches its variables (the whole network where zoo.align
needs it)."""

import numpy as np
import pytest

from pdiff_jax.config.check import ConfigError, SelectorError, validate_config
from pdiff_jax.config.defaults import get_config
from pdiff_jax.data.catalog import DataFormatError, DataMissingError
from pdiff_jax.params.subset import SubsetError


def test_shipped_tfds_config_without_its_data_names_the_command(tmp_path, no_network,
                                                                config_with, shipped_config):
    config = config_with(shipped_config("resnet18", None), "data.data_dir", str(tmp_path))
    with pytest.raises(DataMissingError, match=f"tfds build cifar100 --data_dir {tmp_path}"):
        validate_config(config)
    assert no_network == []


def test_selector_matching_nothing_is_a_config_and_a_subset_error(smoke_config, one_line):
    config = smoke_config(zoo__selector="params/bn9/.*")
    with pytest.raises(SelectorError) as info:
        validate_config(config)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, SubsetError)
    assert one_line(info.value).startswith(
        "zoo.selector: selector pattern 'params/bn9/.*' matches no variable")
    assert "Closest names: 'params/bn" in str(info.value)


def test_selector_is_checked_against_the_data_shapes(tfds_dir, config_with, shipped_config):
    # convnet3 on 32x32x3 inputs; an ok selector passes, one for another model does not.
    config = shipped_config("convnet3", "mnist")
    config.data.data_dir = str(tfds_dir)
    config.zoo.align = "none"    # aligning needs the whole network (tested below)
    config.evaluate.recompute_batch_stats = 0   # so does recomputing statistics
    validate_config(config_with(config, "zoo.selector", r"params/.*bn.*"))
    with pytest.raises(SelectorError, match=r"'params/layer4_1/.*' matches no variable"):
        validate_config(config_with(config, "zoo.selector", r"params/layer4_1/.*"))


def test_zoo_align_needs_a_permutation_spec_and_whole_networks(smoke_config):
    # ResNets are alignable (pdiff_jax.zoo.resnet_permutations); a partial selector is not.
    fields = dict(model__name="resnet18", model__kwargs={"width": 4}, zoo__mode="seed",
                  zoo__align="merge_many")
    validate_config(smoke_config(**fields, zoo__selector=""))
    with pytest.raises(ConfigError, match=r"^zoo\.selector must be every variable of the "
                       r"network for zoo\.align='merge_many' \(it permutes 'batch_stats/"):
        validate_config(smoke_config(**fields, zoo__selector="params/.*"))
    # A subset zoo's snapshots share one network's units: aligning them is refused.
    with pytest.raises(ConfigError, match=r"^zoo\.align must be 'none' unless "
                                          r"zoo\.mode='seed', got 'merge_many'"):
        validate_config(smoke_config(**{**fields, "zoo__mode": "subset"},
                                     zoo__selector="params/.*"))


def test_zoo_align_of_an_architecture_without_a_permutation_spec_is_refused(monkeypatch,
                                                                            smoke_config,
                                                                            config_with):
    from pdiff_jax.zoo import alignment

    # As if the smoke config's cnn_bn had no spec yet.
    monkeypatch.setattr(alignment, "SEQUENTIAL_MODELS", ("mlp3", "convnet3"))
    config = smoke_config(zoo__mode="seed", zoo__selector="", zoo__align="weight_matching")
    assert config.model.name == "cnn_bn"
    with pytest.raises(ConfigError, match=r"^zoo\.align='weight_matching': weight matching "
                       r"knows the permutation structure of .*not 'cnn_bn'; use zoo.align='none'"):
        validate_config(config)
    validate_config(config_with(config, "zoo.align", "none"))


def test_recomputing_batch_stats_needs_vectors_that_hold_them(smoke_config):
    # The default subset (scales and biases of two BatchNorms) holds no statistics.
    with pytest.raises(ConfigError, match=r"^evaluate\.recompute_batch_stats must be 0 when "
                       r"the generated vectors hold no BatchNorm statistics \(model 'cnn_bn', "
                       r"zoo\.mode='subset'.*use --config\.evaluate\.recompute_batch_stats=0"):
        validate_config(smoke_config(evaluate__recompute_batch_stats=500))
    validate_config(smoke_config(zoo__mode="seed", zoo__selector="",
                                 evaluate__recompute_batch_stats=500))
    with pytest.raises(ConfigError, match=r"^evaluate\.recompute_batch_stats must be 0"):
        validate_config(smoke_config(model__name="mlp3", zoo__mode="seed",
                                     zoo__selector="", evaluate__recompute_batch_stats=500))


def test_checking_compiles_nothing(smoke_config):
    # The model's variables come from jax.eval_shape: nothing is compiled or run.
    import jax

    events = []

    def listener(event, duration, **kwargs):
        events.append(event)

    validate_config(smoke_config(model__name="mlp3"))  # warm imports
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.jit(lambda x: x + 1)(np.float32(1.0))  # the listener sees a compilation
        assert any("backend_compile" in e for e in events), events
        events.clear()
        validate_config(smoke_config(model__name="resnet18",
                                     model__kwargs={"stem": "cifar", "width": 8}))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert [e for e in events if "backend_compile" in e] == []


def test_missing_npz(tmp_path, config_with):
    with pytest.raises(DataMissingError, match=f"^data.name: no such .npz file: {tmp_path}/mine"
                                               r".npz; pass an existing .npz path or a known data "
                                               r"set, e.g. --config.data.name=mnist$"):
        validate_config(config_with(get_config("smoke"), "data.name", str(tmp_path / "mine.npz")))


def test_malformed_npz(tmp_path, config_with):
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataFormatError, match=r"lacks key\(s\) \['y_test'\]"):
        validate_config(config_with(get_config("smoke"), "data.name", str(path)))


def test_npz_shapes_reach_the_model_check(tmp_path, config_with, shipped_config):
    # 12x12 gray images, 3 classes: mlp3 builds on them; the selector is checked on its variables.
    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (6, 12, 12), np.uint8),
             y_train=np.arange(6) % 3, x_test=rng.integers(0, 255, (3, 12, 12), np.uint8),
             y_test=np.arange(3))
    config = config_with(shipped_config("mlp3", "smoke"), "data.name", str(path))
    validate_config(config)
    with pytest.raises(SelectorError, match="matches no variable"):
        validate_config(config_with(config, "zoo.selector", "params/conv1/.*"))
