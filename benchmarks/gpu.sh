#!/usr/bin/env bash
# The one-shot device benchmark (benchmarks/bench_gpu.py), one markdown table:
#   bash benchmarks/gpu.sh               # on a GPU: full sizes; table in $OUT/gpu.md
#   bash benchmarks/gpu.sh --cpu-smoke   # toy sizes on a CPU, under two minutes
# Other flags go to bench_gpu.py (--budget SECONDS, --sections ..., --keep-workdir DIR).
#
# The device image has jax, flax, optax, orbax and chex but not ml-collections or
# tensorflow-datasets and their small dependencies (../shared/GPU_NOTES.md) and no
# network: carry their wheels in .whl/ (benchmarks/BENCHMARKS.md says how to fetch them);
# they are installed into a private directory only where the imports fail.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"

if ! "$py" -c "import ml_collections, tensorflow_datasets" 2>/dev/null; then
  if [ ! -d .whl ]; then
    echo "gpu.sh: ml_collections / tensorflow_datasets are missing and there is no .whl/" \
         "to install them from; download the wheels into .whl/ (see BENCHMARKS.md)" >&2
    exit 2
  fi
  site="${TMPDIR:-/tmp}/pdiff_site"
  "$py" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The end-to-end run is a second process on the same GPU: allocate on demand.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
exec "$py" benchmarks/bench_gpu.py --out "${OUT:-benchmarks/out}" "$@"
