"""Suites from the command line (launch/sweep.py): the plan, a smoke suite run end to end
through real ``pdiff_jax.main`` subprocesses, the paper's ablations as runs, and the
overrides every run gets."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pdiff_jax.config.defaults import get_config
from pdiff_jax.suites import runner as suite_runner

ROOT = Path(__file__).resolve().parents[2]


def _tiny_config(tmp_path, data_dir: str = "") -> Path:
    """A config file: the smoke config made smaller, with a 'pair' suite (+ a broken run)."""
    path = tmp_path / "tiny.py"
    path.write_text(textwrap.dedent(f"""
        from pdiff_jax.config.defaults import get_config as _base


        def get_config(arg=None):
            config = _base("smoke")
            config.data.data_dir = {data_dir!r}
            config.data.max_train = 1000
            config.data.max_test = 300
            config.zoo.num_models = 8
            config.evaluate.train_examples = 500
            config.evaluate.num_generated = 4
            config.evaluate.num_baseline = 4
            config.evaluate.tsne = False
            config.evaluate.trajectories = 0
            config.evaluate.finetune_pairs = 0
            config.generator.autoencoder.train.steps = 20
            config.generator.diffusion.train.steps = 20
            return config


        def get_suites(arg=None):
            return {{"pair": {{"default": {{}}, "k4": {{"zoo.num_models": 4}},
                              "broken": {{"zoo.selector": "^params/nope$"}}}}}}
        """))
    return path


def test_plan_prints_runs_and_overrides_and_does_no_work(tmp_path, capsys, sweep):
    config = _tiny_config(tmp_path)
    assert sweep.main([str(config), "--suite", "pair", "--workdir-root",
                       str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out
    assert "3 runs" in out and "3 to run" in out and out.count("pending") == 3
    assert "k4  " in out and "zoo.num_models=4" in out and "(base config)" in out
    assert f"--workdir {tmp_path / 'root' / 'pair' / 'k4'} --config.zoo.num_models=4" in out
    assert not (tmp_path / "root").exists()
    with pytest.raises(SystemExit) as exited:   # a typo: one line, exit 2, no traceback
        sweep.main([str(config), "--suite", "nope"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"error: no suite 'nope'.*ablations.*pair", err), err
    with pytest.raises(SystemExit):
        sweep.main([str(config), "--suite", "pair", "--set", "zoo.num_modles=3"])
    assert 'Did you mean "num_models"' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main([str(tmp_path / "missing.py"), "--suite", "pair"])
    assert f"error: no config file {tmp_path / 'missing.py'}" in capsys.readouterr().err


def _sweep(config: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "launch" / "sweep.py"), str(config),
                           "--suite", "pair", "--run", "--workdir-root", str(root), *extra],
                          capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path, tfds_dir, small_mnist, monkeypatch, markdown_table):
    del small_mnist   # built once into tfds_dir: the runs only read it
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):   # the runs share the tests' cache
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", jax_cache_dir())
    config = _tiny_config(tmp_path, str(tfds_dir))
    root = tmp_path / "runs"

    done = _sweep(config, root, "--only", "default,k4")
    assert done.returncode == 0, done.stdout + done.stderr
    suite_dir = root / "pair"
    table = markdown_table((suite_dir / "suite.md").read_text())
    assert list(table) == ["default", "k4", "broken"]   # the whole suite, broken not run yet
    assert table["broken"]["state"] == "pending"
    for name in ("default", "k4"):
        r = json.loads((suite_dir / name / "results.json").read_text())
        assert table[name]["state"] == "finished"
        assert table[name]["K"] == str(r["meta"]["K"]) == ("8" if name == "default" else "4")
        assert table[name]["original"] == f"{r['original']['best']:.2f}"
        assert table[name]["p-diff best"] == f"{r['pdiff']['best']:.2f}"
        assert table[name]["p-diff med."] == f"{r['pdiff']['median']:.2f}"
        assert table[name]["gaussian best"] == f"{r['baselines']['gaussian']['best']:.2f}"
        assert float(table[name]["peak RSS MB"]) > 100
    assert (suite_dir / "plot_num_models.png").exists()

    # A second invocation does no work.
    pair = ("default", "k4")
    stamps = {n: (suite_dir / n / "results.json").stat().st_mtime_ns for n in pair}
    again = _sweep(config, root, "--only", "default,k4")
    assert again.returncode == 0, again.stderr
    assert "skipping 2 finished run(s)" in again.stdout and "started" not in again.stdout
    assert stamps == {n: (suite_dir / n / "results.json").stat().st_mtime_ns for n in pair}
    assert all(len(suite_runner.read_status(suite_dir / n)["attempts"]) == 1 for n in pair)

    # The whole suite: the broken run fails, is reported, and the finished ones stay so.
    full = _sweep(config, root)
    assert full.returncode == 1
    assert "broken" in full.stderr and "matches no variable" in full.stderr  # main's one line
    assert str(suite_dir / "broken" / "run.log") in full.stderr
    table = markdown_table((suite_dir / "suite.md").read_text())
    assert [table[n]["state"] for n in ("default", "k4", "broken")] == \
        ["finished", "finished", "failed"]


def jax_cache_dir() -> str:
    import jax

    return jax.config.jax_compilation_cache_dir or ""


@pytest.mark.parametrize("config", ["configs/default.py", "configs/resnet18.py:cifar10"])
def test_sweep_expands_the_paper_ablations(config, sweep):
    _, _, runs = sweep.load_sweep(str(ROOT / config))
    assert {f"k{k}" for k in (1, 10, 50, 200, 500)} <= set(runs)
    assert {"noise_none", "norm_group", "norm_batch"} <= set(runs)
    cmds = dict(sweep.commands(config, "runs/x", runs, via="launch/local.sh 2"))
    assert cmds["k10"] == ["launch/local.sh", "2", "--config", config, "--workdir", "runs/x/k10",
                           "--config.zoo.num_models=10"]
    assert "--config.generator.autoencoder.model.norm=group" in cmds["norm_group"]


def test_sweep_rejects_an_unknown_key(sweep):
    with pytest.raises(ValueError, match=r"zoo\.num_modles"):
        sweep.check_overrides(get_config(), "typo", {"zoo.num_modles": 3})
    with pytest.raises(ValueError, match=r"zoo\.num_models"):
        sweep.check_overrides(get_config(), "type", {"zoo.num_models": "many"})


def test_set_overrides_every_run_and_is_parsed_as_literals(sweep):
    assert sweep.parse_sets(["a.b=500", "c=kde", "d=(1, 2)"]) == {"a.b": 500, "c": "kde",
                                                                 "d": (1, 2)}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        sweep.parse_sets(["nothing"])
    cmds = dict(sweep.commands("c.py", "w", {"x": {"k": 1}, "y": {}}, common={"s": 5}))
    assert cmds["x"][-2:] == ["--config.s=5", "--config.k=1"]
    assert cmds["y"][-1] == "--config.s=5"
