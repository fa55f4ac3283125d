#!/usr/bin/env bash
# The one-shot device benchmark (benchmarks/bench_gpu.py), one markdown table:
#   bash benchmarks/gpu.sh               # on a GPU: full sizes; table in $OUT/gpu.md
#   bash benchmarks/gpu.sh --cpu-smoke   # toy sizes on a CPU, under two minutes
# Other flags go to bench_gpu.py (--budget SECONDS, --sections ..., --keep-workdir DIR).
# What the device image lacks is installed from .whl/ (benchmarks/device_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/device_env.sh
. benchmarks/device_env.sh
exec "$py" benchmarks/bench_gpu.py --out "${OUT:-benchmarks/out}" "$@"
