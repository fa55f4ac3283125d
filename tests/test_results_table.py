"""Every published results table is a rendering of committed run records
(launch/results_table.py, launch/make_record.py): the repository's tables match their
records, a hand edit or a changed record is caught, and a record keeps what a table quotes
and nothing per model."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "results" / "records"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "launch" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(root: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "launch" / "results_table.py"), "--check",
                           "--root", str(root)], capture_output=True, text=True, timeout=60)


def test_the_published_tables_are_their_records():
    out = _check()
    assert out.returncode == 0, out.stderr


@pytest.fixture
def copy_of_the_tables(tmp_path):
    for rel in ("README.md", "benchmarks/BENCHMARKS.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copytree(RECORDS, tmp_path / "results" / "records")
    return tmp_path


def test_a_hand_edited_number_fails_the_check(copy_of_the_tables):
    readme = copy_of_the_tables / "README.md"
    record = json.loads((RECORDS / "default.json").read_text())
    quoted = f"{record['results']['pdiff']['median']:.2f}"
    text = readme.read_text()
    begin = text.index("<!-- results-table:begin -->")
    at = text.index(f"/ {quoted} |", begin)
    readme.write_text(text[:at] + "/ 99.99 |" + text[at + len(quoted) + 4:])
    out = _check(copy_of_the_tables)
    assert out.returncode == 1
    assert "README.md" in out.stderr and "99.99" in out.stderr
    assert "BENCHMARKS.md" not in out.stderr


def test_a_changed_record_fails_the_check_until_the_tables_are_rewritten(copy_of_the_tables):
    path = copy_of_the_tables / "results" / "records" / "mlp3.json"
    record = json.loads(path.read_text())
    record["results"]["pdiff"]["best"] = 12.34
    path.write_text(json.dumps(record))
    out = _check(copy_of_the_tables)
    assert out.returncode == 1
    assert "README.md" in out.stderr and "BENCHMARKS.md" in out.stderr
    subprocess.run([sys.executable, str(ROOT / "launch" / "results_table.py"), "--root",
                    str(copy_of_the_tables)], check=True, capture_output=True, timeout=60)
    assert _check(copy_of_the_tables).returncode == 0
    assert "12.34 vs" in (copy_of_the_tables / "benchmarks/BENCHMARKS.md").read_text()


def test_a_missing_block_is_an_error(copy_of_the_tables):
    readme = copy_of_the_tables / "README.md"
    readme.write_text(readme.read_text().replace("<!-- results-table:end -->", ""))
    out = _check(copy_of_the_tables)
    assert out.returncode != 0 and "results-table" in out.stderr


@pytest.mark.parametrize("path", sorted(RECORDS.glob("*.json")), ids=lambda p: p.stem)
def test_every_record_says_how_it_was_made_and_stays_small(path):
    record = json.loads(path.read_text())
    assert record["name"] == path.stem
    for field in ("command", "revision", "finished", "machine", "load", "timings_s", "config"):
        assert record[field], field
    assert "per_model" not in json.dumps(record) and path.stat().st_size < 20_000


def _finished_run(workdir: Path) -> None:
    group = {"best": 90.0, "best_by_train": 89.0, "avg": 88.0, "median": 88.5, "worst": 80.0,
             "n": 3, "best_index": 1, "std": 1.0,
             "novelty": {"nn_l2_gen_mean": 0.5, "max_iou_gen_mean": 0.9}}
    results = {
        "original": group, "pdiff": group, "ensemble": {"acc": 87.0, "max_iou": 0.8},
        "baselines": {"noise_0.1": group}, "novelty": {"nn_l2_gen_mean": 0.5},
        "per_model": {"pdiff": {"test_acc": [90.0, 88.0, 87.0]}},
        "meta": {"arch": "mlp3", "mode": "seed", "D": 10, "K": 3, "timings_s": {"collect": 1.5},
                 "config": {"seed": 0}},
    }
    workdir.mkdir()
    (workdir / "results.json").write_text(json.dumps(results))
    (workdir / "config.json").write_text(json.dumps({"seed": 0, "zoo": {"align": "none"}}))
    (workdir / "metrics.jsonl").write_text('{"stage": "timing", "step": 0, "time": 1.8e9}\n')


def test_make_record_keeps_the_quoted_fields_and_drops_the_per_model_arrays(tmp_path):
    make_record = _script("make_record")
    _finished_run(tmp_path / "run")
    record = make_record.make_record(
        tmp_path / "run", name="tiny", command="python -m pdiff_jax.main --workdir run",
        revision="abc1234+dirty", wall_s=12.34, now=1.8e9 + 30, load=(1.0, 2.0, 3.0),
        machine_info={"cpu": "test"})
    assert record["results"]["pdiff"] == {"best": 90.0, "best_by_train": 89.0, "avg": 88.0,
                                          "median": 88.5, "worst": 80.0, "n": 3}
    assert record["results"]["baselines"]["noise_0.1"]["nn_l2_gen_mean"] == 0.5
    assert record["results"]["ensemble"] == {"acc": 87.0}
    assert "per_model" not in json.dumps(record) and "config" not in record["results"]["meta"]
    assert record["finished"] == "2027-01-15T08:00:00Z" and record["wall_s"] == 12.3
    assert record["load"] == {"1_5_15_min": [1.0, 2.0, 3.0], "seconds_after_run": 30}
    assert record["config"]["zoo"] == {"align": "none"}
    path = make_record.write_record(record, tmp_path / "records")
    assert json.loads(path.read_text()) == record


def test_a_conditional_run_keeps_each_levels_summary_without_its_accuracies(tmp_path):
    make_record = _script("make_record")
    _finished_run(tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    level = {"level": 0, "range": [75.0, 85.0],
             "generated": {"median": 81.3, "fraction_inside": 0.91, "n": 3},
             "generated_test_acc": [80.0, 81.3, 84.0]}
    results["conditional"] = {"all_levels_met": False, "guidance_scale": 3.0,
                              "levels": [level]}
    (tmp_path / "run" / "results.json").write_text(json.dumps(results))
    record = make_record.make_record(tmp_path / "run", name="c", command="c", revision="r",
                                     load=(0, 0, 0), machine_info={})
    assert record["results"]["conditional"] == {
        "all_levels_met": False, "guidance_scale": 3.0,
        "levels": [{k: v for k, v in level.items() if k != "generated_test_acc"}]}


def test_git_revision_marks_a_dirty_tree(tmp_path):
    make_record = _script("make_record")
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True,
                                    capture_output=True)
    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = make_record.git_revision(tmp_path)
    assert len(clean) >= 7 and "+" not in clean
    (tmp_path / "f").write_text("2")
    assert make_record.git_revision(tmp_path) == clean + "+dirty"


def test_a_margin_cell_carries_its_interval_where_the_record_has_one():
    table = _script("results_table")
    frontier = {"margin": {"noise": 0.4812, "interpolation": None, "pca_gaussian": -0.03},
                "margin_interval": {"noise": [0.2113, 0.7551], "pca_gaussian": None}}
    assert table.margin_cell(frontier, "noise") == "+0.48 [+0.21, +0.76]"
    assert table.margin_cell(frontier, "interpolation") == "-"
    assert table.margin_cell(frontier, "pca_gaussian") == "-0.03"
    assert table.margin_cell({"margin": {"noise": 0.1}}, "noise") == "+0.10"   # older record
