#!/usr/bin/env bash
# Run every benchmark one after another (about 20-25 minutes on a 2-core CPU) and keep
# each one's markdown output in $OUT (default benchmarks/results/).
#   benchmarks/run_all.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
export TQDM_DISABLE=1
$PY benchmarks/bench_generator.py --repeats 5 --no-e2e | tee "$OUT/generator.md"
$PY benchmarks/bench_evaluate.py --images 250 --models 100 --repeats 2 --map-models 5 --gemm-images 10 \
  | tee "$OUT/evaluate.md"
$PY benchmarks/bench_seed_zoo.py --models 50 --examples 10000 --repeats 3 | tee "$OUT/seed_zoo.md"
$PY benchmarks/bench_end_to_end.py --runs 2 | tee "$OUT/end_to_end.md"
