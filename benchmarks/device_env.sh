# Sourced by the device scripts (gpu.sh, resnet18_whole.sh) from the repository root:
# sets $py and PYTHONPATH so that pdiff_jax imports on the device image.
#
# The device image has jax, flax, optax, orbax and chex but not ml-collections or
# tensorflow-datasets and their small dependencies (../shared/GPU_NOTES.md) and no
# network: carry their wheels in .whl/ (benchmarks/BENCHMARKS.md says how to fetch them);
# they are installed into a private directory only where the imports fail.
py="${PYTHON:-python3}"
if ! "$py" -c "import ml_collections, tensorflow_datasets" 2>/dev/null; then
  if [ ! -d .whl ]; then
    echo "$(basename "$0"): ml_collections / tensorflow_datasets are missing and there is" \
         "no .whl/ to install them from; download the wheels into .whl/ (see BENCHMARKS.md)" >&2
    exit 2
  fi
  site="${TMPDIR:-/tmp}/pdiff_site"
  "$py" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The scripts run their work in child processes on the same device: allocate on demand
# (so a reported peak is what a run used).
export XLA_PYTHON_CLIENT_PREALLOCATE=false
