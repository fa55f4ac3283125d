"""Which config a workdir holds (pdiff_jax.config.workdir): a changed config is refused
exactly when a finished artifact depends on what changed, and the message says what to
delete; a workdir that cannot be created or written is refused before any work."""

import json
import os

import pytest

from pdiff_jax import artifacts
from pdiff_jax.config.check import WorkdirError, validate_config
from pdiff_jax.config.defaults import get_config
from pdiff_jax.config.workdir import (
    WorkdirConflict,
    adopt,
    check_prerequisites,
)
from pdiff_jax.pipeline import STAGES


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


@pytest.mark.parametrize("where", ["a_file", "under_a_file"])
def test_workdir_that_cannot_be_created(where, tmp_path, smoke_config):
    (tmp_path / "a_file").write_text("not a directory")
    wd = tmp_path / "a_file" if where == "a_file" else tmp_path / "a_file" / "run"
    with pytest.raises(WorkdirError, match=f"^cannot create workdir {wd}: .*; pass a writable "
                                           "--workdir$") as info:
        validate_config(smoke_config(), workdir=wd)
    assert isinstance(info.value, OSError) and info.value.errno == 20  # ENOTDIR
    assert (tmp_path / "a_file").read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_workdir_under_a_read_only_directory(tmp_path, smoke_config):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(WorkdirError, match=f"cannot create workdir {ro}/run: {ro} is not "
                                               "writable"):
            validate_config(smoke_config(), workdir=ro / "run")
    finally:
        ro.chmod(0o700)


def test_existing_or_creatable_workdir_passes(tmp_path, smoke_config):
    validate_config(smoke_config(), workdir=tmp_path)
    validate_config(smoke_config(), workdir=tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
