#!/usr/bin/env bash
# One p-diff run on a Cloud TPU pod slice: the same command on every TPU VM worker.
#
#   launch/tpu_pod.sh TPU_NAME ZONE --config configs/resnet18.py --workdir /mnt/shared/runs/resnet18
#
# Needs the gcloud CLI, a TPU VM slice already created (e.g. v4-32), and this
# repository at the same path on every worker (see launch/README.md; SETUP=1
# copies it and installs it with pip first). PDIFF_DISTRIBUTED=auto makes
# pdiff_jax.runtime.distributed call jax.distributed.initialize() with no arguments, so
# JAX reads the pod's layout from the TPU metadata. The workdir must be shared
# by all workers (an NFS / Filestore mount; the pipeline uses local paths, not gs://).
#
# Environment: PROJECT (gcloud project, default: the configured one),
# REMOTE_DIR (repository path on the workers, default ~/pdiff_jax), SETUP=1.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 TPU_NAME ZONE [pdiff_jax.main flags...]" >&2
  exit 2
fi
tpu="$1"; zone="$2"; shift 2
remote_dir="${REMOTE_DIR:-~/pdiff_jax}"
project_args=()
[[ -n "${PROJECT:-}" ]] && project_args=(--project "$PROJECT")
ssh=(gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" "${project_args[@]}" --worker=all)

if [[ "${SETUP:-0}" == 1 ]]; then
  repo="$(cd "$(dirname "$0")/.." && pwd)"
  tar -C "$repo" --exclude=.git --exclude=runs --exclude='*.egg-info' -czf /tmp/pdiff_jax.tgz .
  gcloud compute tpus tpu-vm scp /tmp/pdiff_jax.tgz "$tpu":/tmp/pdiff_jax.tgz --zone "$zone" \
    "${project_args[@]}" --worker=all
  "${ssh[@]}" --command "mkdir -p $remote_dir && tar -C $remote_dir -xzf /tmp/pdiff_jax.tgz \
    && pip install -q 'jax[tpu]' -e $remote_dir"
fi

args="$(printf '%q ' "$@")"
"${ssh[@]}" --command "cd $remote_dir && PDIFF_DISTRIBUTED=auto python3 -m pdiff_jax.main $args"
