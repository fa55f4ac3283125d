"""benchmarks/frontier_points.py draws the evaluate stage's own frontier points again, and
more of them, from a finished run (the smoke run)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def frontier_points():
    spec = importlib.util.spec_from_file_location("frontier_points",
                                                  ROOT / "benchmarks" / "frontier_points.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_point_drawn_again_equals_the_evaluate_stages(smoke_run, tmp_path):
    workdir = smoke_run[0]
    stage = json.loads((workdir / "results.json").read_text())["frontier"]
    out = tmp_path / "points.json"
    frontier_points().main(["--workdir", str(workdir), "--out", str(out),
                            "--knobs", "noise=0.03", "pdiff=1"])
    points = json.loads(out.read_text())
    again = {(family, p["knob"]): p for family, rows in points.items() for p in rows}
    assert set(again) == {("noise", 0.03), ("pdiff", 1.0)}
    for (family, knob), point in again.items():
        rows = stage["pdiff"] if family == "pdiff" else stage["families"][family]
        [measured] = [p for p in rows if p["knob"] == knob]
        for field in ("median", "best", "nn_iou_any", "nn_max_iou"):
            assert point[field] == pytest.approx(measured[field], abs=1e-6), (family, field)


def test_set_changes_what_pdiffs_knob_sweeps(smoke_run, tmp_path):
    out = tmp_path / "mixes.json"
    frontier_points().main(["--workdir", str(smoke_run[0]), "--out", str(out),
                            "--knobs", "pdiff=0.3",
                            "--set", "evaluate.frontier.pdiff_knob=latent_mix",
                            "generator.sampling.temperature=0.5"])
    [point] = json.loads(out.read_text())["pdiff"]
    assert point["knob"] == 0.3 and point["n"] == 8


def test_set_types_values_as_the_config_and_names_a_missing_field(smoke_run, tmp_path):
    from ml_collections import ConfigDict

    from pdiff_jax.config.overrides import check_overrides, parse_sets
    from pdiff_jax.errors import ConfigError

    config = ConfigDict({"generator": {"sampling": {"temperature": 1.0, "steps": 0,
                                                    "sampler": "ddpm"}}})
    changed = check_overrides(config, "--set", parse_sets(["generator.sampling.temperature=0.75",
                                                           "generator.sampling.steps=10",
                                                           "generator.sampling.sampler=ddim"]))
    assert changed.generator.sampling.to_dict() == {"temperature": 0.75, "steps": 10,
                                                    "sampler": "ddim"}
    with pytest.raises(ConfigError, match=r"cannot set generator\.sampling\.temprature"):
        frontier_points().main(["--workdir", str(smoke_run[0]), "--out", str(tmp_path / "p"),
                                "--knobs", "pdiff=1", "--set",
                                "generator.sampling.temprature=0.5"])
