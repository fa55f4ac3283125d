"""Zoos shared between suite runs (pdiff_jax.suites.shared_zoos): a zoo's key reads only
what collect reads, and finished zoos of any suite are found, those of older versions
too."""

import json

from pdiff_jax.config.diff import with_new_defaults
from pdiff_jax.suites import runner as suite_runner
from pdiff_jax.suites import shared_zoos as suite_zoos


def test_zoo_key_reads_only_the_collect_sections():
    sections = ("seed", "zoo", "evaluate.train_examples")
    a = {"seed": 0, "zoo": {"num_models": 200}, "evaluate": {"train_examples": 10, "x": 1},
         "generator": {"kind": "conv"}}
    b = json.loads(json.dumps(a))
    b["generator"]["kind"], b["evaluate"]["x"] = "fc", 2
    assert suite_zoos.zoo_key(a, sections) == suite_zoos.zoo_key(b, sections)
    b["zoo"]["num_models"] = 50
    assert suite_zoos.zoo_key(a, sections) != suite_zoos.zoo_key(b, sections)


def test_zoo_donors_find_finished_zoos_of_any_suite(tmp_path):
    sections = ("zoo",)
    for suite, run, finished in (("s1", "a", True), ("s2", "b", True), ("s2", "c", False)):
        w = tmp_path / suite / run
        (w / "zoo" / "arrays").mkdir(parents=True)
        if finished:
            (w / "zoo" / "meta.json").write_text("{}")
        (w / "config.json").write_text(json.dumps({"zoo": {"k": run}}))
    donors = suite_zoos.zoo_donors(tmp_path, sections)
    assert [w.name for _, w in donors] == ["a", "b"]
    # Keys a newer version added are read at their defaults (config_diff.with_new_defaults).
    assert donors[0][0] == suite_zoos.zoo_key(with_new_defaults({"zoo": {"k": "a"}}), sections)
    assert donors[0][0] != donors[1][0]


def test_an_older_versions_run_is_finished_and_shares_its_zoo(tmp_path):
    # A run made before some keys existed (their defaults keep the old behaviour) is the
    # run the current config would make: not stale, and its zoo is shared.
    from pdiff_jax.config.defaults import get_config
    from pdiff_jax.pipeline import STAGES

    current = json.loads(get_config("smoke").to_json_best_effort())
    older = json.loads(json.dumps(current))
    del older["zoo"]["precision"], older["generator"]["condition"]
    run = tmp_path / "suite" / "old"
    (run / "zoo" / "arrays").mkdir(parents=True)
    (run / "zoo" / "meta.json").write_text("{}")
    (run / "config.json").write_text(json.dumps(older))
    (run / "results.json").write_text("{}")
    sections = STAGES[0].sections
    assert suite_runner.run_state(run, current)["state"] == "finished"
    assert suite_zoos.zoo_donors(tmp_path, sections) == [
        (suite_zoos.zoo_key(current, sections), run)]
    current["zoo"]["precision"] = "bf16"   # not the default: another zoo, another run
    assert suite_runner.run_state(run, current)["state"] == "stale"
    assert suite_zoos.zoo_donors(tmp_path, sections)[0][0] != suite_zoos.zoo_key(current, sections)
