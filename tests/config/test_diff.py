"""How two configs differ (pdiff_jax.config.diff): the changed fields, named."""

import json

from pdiff_jax.config.defaults import get_config
from pdiff_jax.config.diff import config_differences


def _changed_config():
    config = get_config("smoke")
    config.zoo.num_models = 200
    config.generator.autoencoder.model.norm = "batch"
    return config


def test_config_differences_names_the_changed_fields():
    saved = json.loads(get_config("smoke").to_json_best_effort(sort_keys=True))
    current = json.loads(_changed_config().to_json_best_effort())
    assert config_differences(saved, current) == [
        "generator.autoencoder.model.norm: 'instance' -> 'batch'", "zoo.num_models: 16 -> 200"]
    assert config_differences(saved, saved) == []
    many = {f"f{i}": i for i in range(8)}
    assert config_differences(many, {k: -v - 1 for k, v in many.items()}, limit=2) == [
        "f0: 0 -> -1", "f1: 1 -> -2", "... and 6 more"]
    assert config_differences({"a": {"b": 1}}, {"a": {}}) == ["a.b: 1 -> '<absent>'"]
