"""Which config a workdir holds: a changed config is refused exactly when a finished
artifact depends on what changed, and the message says what to delete."""

import json

import pytest

from pdiff_jax import artifacts
from pdiff_jax.config.defaults import get_config
from pdiff_jax.config.diff import config_differences
from pdiff_jax.config.workdir import (
    WorkdirConflict,
    adopt,
    check_prerequisites,
)
from pdiff_jax.pipeline import STAGES


def _changed_config():
    config = get_config("smoke")
    config.zoo.num_models = 200
    config.generator.autoencoder.model.norm = "batch"
    return config


def _finish(workdir, *names):
    """Fake finished artifacts (what ``artifacts.exists`` checks)."""
    for name in names:
        (workdir / name / "arrays").mkdir(parents=True)
        (workdir / name / "meta.json").write_text("{}")


def _saved(workdir, config):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(sort_keys=True))


def test_new_workdir_and_same_config_are_accepted(tmp_path):
    config = get_config("smoke")
    adopt(tmp_path / "new", config, STAGES)
    _saved(tmp_path / "wd", config)
    _finish(tmp_path / "wd", "zoo", "autoencoder")
    adopt(tmp_path / "wd", get_config("smoke"), STAGES)


def test_a_failed_first_attempt_does_not_poison_the_workdir(tmp_path):
    wd = tmp_path / "wd"
    old = get_config("smoke")
    old.zoo.lr = 1e6                     # diverged: nothing finished, some training state left
    _saved(wd, old)
    stale = artifacts.checkpoint_dir(wd, "collect", "base") / "1"
    stale.mkdir(parents=True)
    adopt(wd, get_config("smoke"), STAGES)
    assert not stale.exists()            # made under the old zoo settings: not resumed


def test_unfinished_training_state_survives_a_change_it_does_not_depend_on(tmp_path):
    wd = tmp_path / "wd"
    _saved(wd, get_config("smoke"))
    state = artifacts.checkpoint_dir(wd, "collect", "subset") / "4"
    state.mkdir(parents=True)
    config = get_config("smoke")
    config.evaluate.num_baseline = 20
    adopt(wd, config, STAGES)
    assert state.exists()


def test_a_change_behind_finished_artifacts_names_them(tmp_path):
    wd = tmp_path / "wd"
    _saved(wd, get_config("smoke"))
    _finish(wd, "zoo", "autoencoder", "diffusion")
    config = get_config("smoke")
    config.generator.autoencoder.model.latent_noise = 0.5
    with pytest.raises(WorkdirConflict) as info:
        adopt(wd, config, STAGES)
    message = str(info.value)
    assert "generator.autoencoder.model.latent_noise" in message
    assert f"delete {wd / 'autoencoder'}/, {wd / 'diffusion'}/ to recompute" in message
    assert f"{wd / 'zoo'}/" not in message   # the zoo does not depend on the autoencoder


def test_a_change_only_later_stages_read_is_accepted(tmp_path):
    wd = tmp_path / "wd"
    _saved(wd, get_config("smoke"))
    _finish(wd, "zoo", "autoencoder", "diffusion", "samples")
    config = get_config("smoke")
    config.evaluate.num_baseline = 20    # read by evaluate only, which has not finished
    adopt(wd, config, STAGES)
    assert json.loads((wd / "config.json").read_text())["evaluate"]["num_baseline"] == 8


def test_a_stage_without_its_inputs_names_the_command(tmp_path):
    todo = [s for s in STAGES if s.name == "sample"]
    with pytest.raises(WorkdirConflict, match=r"stage 'sample' needs the 'collect' stage's "
                                              r"result.*--stages=collect,autoencoder,"
                                              r"diffusion,sample"):
        check_prerequisites(tmp_path, todo, STAGES)
    _finish(tmp_path, "zoo", "autoencoder", "diffusion")
    check_prerequisites(tmp_path, todo, STAGES)


def test_config_differences_names_the_changed_fields():
    import json

    saved = json.loads(get_config("smoke").to_json_best_effort(sort_keys=True))
    current = json.loads(_changed_config().to_json_best_effort())
    assert config_differences(saved, current) == [
        "generator.autoencoder.model.norm: 'instance' -> 'batch'", "zoo.num_models: 16 -> 200"]
    assert config_differences(saved, saved) == []
    many = {f"f{i}": i for i in range(8)}
    assert config_differences(many, {k: -v - 1 for k, v in many.items()}, limit=2) == [
        "f0: 0 -> -1", "f1: 1 -> -2", "... and 6 more"]
    assert config_differences({"a": {"b": 1}}, {"a": {}}) == ["a.b: 1 -> '<absent>'"]


def test_keys_added_since_a_workdir_was_made_count_only_when_not_default(tmp_path):
    wd = tmp_path / "wd"
    old = json.loads(get_config("smoke").to_json_best_effort())
    del old["zoo"]["data_placement"]   # as a workdir made before the key existed
    wd.mkdir()
    (wd / "config.json").write_text(json.dumps(old))
    _finish(wd, "zoo")
    adopt(wd, get_config("smoke"), STAGES)   # the default: what the old version did
    config = get_config("smoke")
    config.zoo.data_placement = "device"
    with pytest.raises(WorkdirConflict, match=r"zoo.data_placement: '<absent>' -> 'device'"):
        adopt(wd, config, STAGES)
