#!/usr/bin/env bash
# Whole ResNet-18 generation on one device (issue 27; benchmarks/bench_resnet18_whole.py),
# one markdown table in $OUT/resnet18_whole.md (default benchmarks/out/):
#   bash benchmarks/resnet18_whole.sh               # on a GPU: configs/resnet18_whole.py:w64
#   bash benchmarks/resnet18_whole.sh --widths 32   # a smaller rung (--widths 16,32: both)
#   bash benchmarks/resnet18_whole.sh --cpu-smoke   # the same recipe at toy sizes, on a CPU
# Other flags go to the driver (--budget SECONDS, default 540 so that the table is out
# within a 10-minute device command; --keep-workdir DIR; --override=--config.x=y).
# What the device image lacks is installed from .whl/ (benchmarks/device_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/device_env.sh
. benchmarks/device_env.sh
exec "$py" benchmarks/bench_resnet18_whole.py --out "${OUT:-benchmarks/out}" "$@"
