#!/usr/bin/env bash
# Whole ResNet-18 generation on one device (issue 27; benchmarks/bench_resnet18_whole.py),
# one markdown table in $OUT/resnet18_whole.md (default benchmarks/out/):
#   bash benchmarks/resnet18_whole.sh               # on a GPU: configs/resnet18_whole.py:w64
#   bash benchmarks/resnet18_whole.sh --widths 32   # a smaller rung (--widths 16,32: both)
#   bash benchmarks/resnet18_whole.sh --cpu-smoke   # the same recipe at toy sizes, on a CPU
# Other flags go to the driver (--budget SECONDS, default 540 so that the table is out
# within a 10-minute device command; --keep-workdir DIR; --override=--config.x=y).
#
# As benchmarks/gpu.sh: the device image lacks ml-collections, tensorflow-datasets and
# their small dependencies and has no network (../shared/GPU_NOTES.md); carry their
# wheels in .whl/ (BENCHMARKS.md says how to fetch them), installed into a private
# directory only where the imports fail.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"

if ! "$py" -c "import ml_collections, tensorflow_datasets" 2>/dev/null; then
  if [ ! -d .whl ]; then
    echo "resnet18_whole.sh: ml_collections / tensorflow_datasets are missing and there is" \
         "no .whl/ to install them from; download the wheels into .whl/ (see BENCHMARKS.md)" >&2
    exit 2
  fi
  site="${TMPDIR:-/tmp}/pdiff_site"
  "$py" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Each width runs in a child process; allocate device memory on demand so that the
# reported peak is what the run used.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
exec "$py" benchmarks/bench_resnet18_whole.py --out "${OUT:-benchmarks/out}" "$@"
