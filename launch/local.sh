#!/usr/bin/env bash
# Start one p-diff run as N processes on this machine, joined by jax.distributed.
#
#   launch/local.sh N [main flags...]
#   launch/local.sh 2 --config configs/default.py:smoke --workdir runs/two_procs
#
# Process i gets PDIFF_NUM_PROCESSES=N, PDIFF_PROCESS_ID=i and
# PDIFF_COORDINATOR=localhost:PORT (pdiff_jax.runtime.distributed reads them). Process 0
# prints to this terminal; the others log to <LOG_DIR>/process_<i>.log. If one
# process fails, the others are stopped.
#
# Environment:
#   PDIFF_PORT            coordinator port (default 12321)
#   PDIFF_GPUS_PER_PROC   GPUs per process on a multi-GPU machine: process i sees
#                         GPUs [i*G, (i+1)*G) via CUDA_VISIBLE_DEVICES (default: unset,
#                         every process sees every GPU; on CPU leave it unset)
#   PDIFF_CPU_DEVICES     virtual CPU devices per process (XLA_FLAGS), e.g. 4
#   LOG_DIR               where processes 1.. log (default: a new directory under /tmp)
#   PYTHON                interpreter (default: python)
set -euo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ || "$1" -lt 1 ]]; then
  echo "usage: $0 NUM_PROCESSES [pdiff_jax.main flags...]" >&2
  exit 2
fi
n="$1"; shift
port="${PDIFF_PORT:-12321}"
python="${PYTHON:-python}"
log_dir="${LOG_DIR:-$(mktemp -d /tmp/pdiff_local.XXXXXX)}"
mkdir -p "$log_dir"

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

for ((i = 0; i < n; i++)); do
  env_args=(PDIFF_NUM_PROCESSES="$n" PDIFF_PROCESS_ID="$i" PDIFF_COORDINATOR="localhost:$port")
  if [[ -n "${PDIFF_GPUS_PER_PROC:-}" ]]; then
    g="$PDIFF_GPUS_PER_PROC"
    env_args+=(CUDA_VISIBLE_DEVICES="$(seq -s, $((i * g)) $(((i + 1) * g - 1)))")
  fi
  if [[ -n "${PDIFF_CPU_DEVICES:-}" ]]; then
    env_args+=(XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$PDIFF_CPU_DEVICES")
  fi
  if ((i == 0)); then
    env "${env_args[@]}" "$python" -m pdiff_jax.main "$@" &
  else
    env "${env_args[@]}" "$python" -m pdiff_jax.main "$@" > "$log_dir/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done
((n > 1)) && echo "processes 1..$((n - 1)) log to $log_dir" >&2

status=0
# Wait for all; on the first failure stop the rest (they would wait forever at a collective).
while ((${#pids[@]})); do
  if wait -n -p done_pid "${pids[@]}"; then rc=0; else rc=$?; fi
  remaining=()
  for pid in "${pids[@]}"; do [[ "$pid" != "$done_pid" ]] && remaining+=("$pid"); done
  pids=("${remaining[@]+"${remaining[@]}"}")
  if ((rc != 0 && status == 0)); then
    status=$rc
    echo "a process exited with status $rc; stopping the others (logs: $log_dir)" >&2
    stop_all
  fi
done
exit "$status"
