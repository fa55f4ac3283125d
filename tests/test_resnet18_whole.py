"""configs/resnet18_whole.py and its device benchmark (benchmarks/resnet18_whole.sh).

The width-8 variant must be the size ladder's ResNet rung (whose numbers
benchmarks/ENTIRE_NETWORKS.md §8 reports) with recomputed BatchNorm statistics, nothing
else; the wider ones the GPU recipe. The benchmark's table is checked for its rows and
columns only: how fast it runs is the benchmark's business, not a test's.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pdiff_jax.config.check import validate_config
from pdiff_jax.config.defaults import config_file, config_module

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "resnet18_whole.py"
LADDER = REPO / "configs" / "size_ladder.py"


def test_w8_is_the_size_ladder_rung_with_recomputed_statistics():
    ladder = config_file(LADDER, "resnet18_w8")
    assert ladder.evaluate.recompute_batch_stats == 1000   # as every whole BatchNorm net
    assert config_file(CONFIG, "w8").to_dict() == ladder.to_dict()


@pytest.mark.parametrize("width", [16, 32, 64])
def test_wider_variants_are_the_gpu_recipe(width):
    config = config_file(CONFIG, f"w{width}")
    num_models, images, draws = config_module(CONFIG).GPU_RUNGS[width]
    assert config.model.name == "resnet18"
    assert config.model.kwargs.to_dict() == {"width": width, "stem": "cifar"}
    assert (config.zoo.num_models, config.data.max_train) == (num_models, images)
    assert config.zoo.mode == "seed" and config.zoo.align == "merge_many"
    assert config.zoo.models_per_step == 1 and config.zoo.precision == "bf16"
    assert config.generator.normalization.basis == "implicit"
    assert config.evaluate.recompute_batch_stats == 1000
    assert config.evaluate.num_generated == config.evaluate.num_baseline == draws
    assert config.evaluate.frontier.enabled
    validate_config(config)
    # apart from these fields, the width-8 rung's recipe
    w8 = config_file(CONFIG, "w8").to_dict()
    changed = {"model.kwargs.width", "zoo.num_models", "zoo.models_per_step", "zoo.precision",
               "data.max_train", "generator.normalization.basis", "evaluate.num_generated",
               "evaluate.num_baseline"}
    assert {k for k in _flat(config.to_dict()) if _flat(config.to_dict())[k] != _flat(w8)[k]} \
        <= changed


def test_the_real_resnet18_has_at_least_50_members():
    assert config_file(CONFIG, "w64").zoo.num_models >= 50


@pytest.mark.parametrize("arg", ["w64,smoke", "w8,smoke"])
def test_smoke_variants_are_width_8_and_valid(arg):
    config = config_file(CONFIG, arg)
    assert config.model.kwargs.width == 8 and config.zoo.num_models == 4
    validate_config(config)


def test_without_a_width_the_real_resnet18():
    assert config_file(CONFIG).to_dict() == config_file(CONFIG, "w64").to_dict()
    assert config_file(CONFIG, "smoke").to_dict() == config_file(CONFIG, "w64,smoke").to_dict()


@pytest.mark.parametrize("arg", ["w12", "w8,w16", "w8,fast"])
def test_one_known_width_at_most(arg):
    with pytest.raises(ValueError, match="one width of w8, w16, w32, w64"):
        config_file(CONFIG, arg)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.slow
def test_device_benchmark_prints_its_table_on_cpu(tmp_path):
    """``resnet18_whole.sh --tiny``: the --cpu-smoke run smaller still (K = 3, 2 draws a
    group, one point per frontier family), through every stage, in one table."""
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path),
               JAX_COMPILATION_CACHE_DIR=str(REPO / ".pytest_cache" / "jax"))
    # The timeout catches a hang, not slowness.
    proc = subprocess.run(["bash", "benchmarks/resnet18_whole.sh", "--tiny"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "resnet18_whole.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("|")]
    columns = config_module(REPO / "benchmarks" / "bench_resnet18_whole.py").COLUMNS
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == list(columns), table
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]
    assert len(rows) == 1, table
    row = rows[0]
    assert row["width"].startswith("64") and row["D"] == "177,602" and row["K"] == "3"
    assert row["status"].startswith("finished"), table
    assert re.fullmatch(r"\d+ \([\d.]+\)", row["collect s (align)"]), table
    assert re.fullmatch(r"\d+ \(\d+ \+ \d+ \+ \d+\)", row["generator s (AE + diff + sample)"])
    assert re.fullmatch(r"\d+", row["evaluate s"])
    for cell in ("zoo best / median", "p-diff best / median"):
        assert re.fullmatch(r"\d+\.\d\d / \d+\.\d\d", row[cell]), table
    assert {m.split()[0] for m in row["frontier margins"].split(", ")} == \
        {"noise", "interpolation", "pca_gaussian"}, table
    assert row["device peak"] == "n/a" and row["host peak"].endswith(" GB")   # a CPU
    assert [t.rsplit(" ", 1)[0] for t in row["targets"].split(", ")] == \
        ["median", "best", "noise margin > 0", "10 min"]
    assert (tmp_path / "w64-results.json").exists() and (tmp_path / "w64.log").exists()
