"""Several processes, one program: JAX's own distributed runtime.

A run on several hosts (or several processes on one host) is the same program
started once per process. :func:`maybe_initialize` connects them with
``jax.distributed.initialize`` before anything touches a device; afterwards
``jax.devices()`` lists every process's devices, the ``data`` mesh of
``pdiff_jax.runtime.sharding`` spans all of them, and jitted steps run SPMD across
processes. A single process does nothing here.

Where the process layout comes from, first match wins:
  * our launcher (``launch/local.sh``): ``PDIFF_NUM_PROCESSES`` (> 1),
    ``PDIFF_PROCESS_ID`` and ``PDIFF_COORDINATOR`` (``host:port`` of process 0),
    optionally ``PDIFF_LOCAL_DEVICE_IDS`` (``0,1``: this process's GPUs);
  * SLURM (``srun`` inside ``launch/slurm.sbatch``): ``SLURM_NTASKS`` > 1 with
    the step variables JAX's SLURM detection reads;
  * ``PDIFF_DISTRIBUTED=auto`` (``launch/tpu_pod.sh``): JAX auto-detects the
    cluster (Cloud TPU pod metadata, Open MPI, ...).

On CPU, cross-process collectives need an implementation: we pick ``gloo``
(measured to work with jax 0.10.2), unless ``PDIFF_CPU_COLLECTIVES`` names
another (``mpi``) or ``none``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax
from absl import logging

ENV_COORDINATOR = "PDIFF_COORDINATOR"
ENV_NUM_PROCESSES = "PDIFF_NUM_PROCESSES"
ENV_PROCESS_ID = "PDIFF_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "PDIFF_LOCAL_DEVICE_IDS"
ENV_AUTO = "PDIFF_DISTRIBUTED"
ENV_CPU_COLLECTIVES = "PDIFF_CPU_COLLECTIVES"
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
               "SLURM_LOCALID")


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """How this process joins the others.

    ``source`` is 'pdiff' (explicit arguments below), 'slurm' or 'auto' (JAX
    detects the rest itself, so the other fields are None).
    """

    source: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None

    def initialize_kwargs(self) -> dict:
        if self.source != "pdiff":
            return {}
        kwargs = dict(coordinator_address=self.coordinator_address,
                      num_processes=self.num_processes, process_id=self.process_id)
        if self.local_device_ids is not None:
            kwargs["local_device_ids"] = list(self.local_device_ids)
        return kwargs


def _int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except KeyError:
        raise ValueError(f"{name} is not set; launch/local.sh sets {ENV_COORDINATOR}, "
                         f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} together") from None
    except ValueError:
        raise ValueError(f"{name}={environ[name]!r} is not an integer") from None


def cluster_from_env(environ: Mapping[str, str] | None = None) -> ClusterSpec | None:
    """The process layout described by ``environ`` (default ``os.environ``); None = one process."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_NUM_PROCESSES):
        n = _int(environ, ENV_NUM_PROCESSES)
        if n < 1:
            raise ValueError(f"{ENV_NUM_PROCESSES} must be at least 1, got {n}")
        if n == 1:
            return None
        pid = _int(environ, ENV_PROCESS_ID)
        if not 0 <= pid < n:
            raise ValueError(f"{ENV_PROCESS_ID}={pid} is outside [0, {n})")
        coordinator = environ.get(ENV_COORDINATOR, "")
        if ":" not in coordinator:
            raise ValueError(f"{ENV_COORDINATOR} must be 'host:port' of process 0, got "
                             f"{coordinator!r}")
        ids = environ.get(ENV_LOCAL_DEVICE_IDS, "").strip()
        local = tuple(int(i) for i in ids.split(",")) if ids else None
        return ClusterSpec("pdiff", coordinator, n, pid, local)
    if all(v in environ for v in _SLURM_VARS) and int(environ["SLURM_NTASKS"]) > 1:
        return ClusterSpec("slurm")
    if environ.get(ENV_AUTO, "").lower() in ("1", "auto", "true"):
        return ClusterSpec("auto")
    return None


def maybe_initialize(environ: Mapping[str, str] | None = None) -> bool:
    """Join the other processes of this run, if there are any; returns whether it did.

    Call it once, first thing, before any JAX computation or device query
    (``jax.distributed.initialize`` must run before the backends start). A
    second call, or a call after another library initialized the runtime, does
    nothing.
    """
    spec = cluster_from_env(environ)
    if spec is None:
        return False
    if jax.distributed.is_initialized():
        return True
    environ = os.environ if environ is None else environ
    collectives = environ.get(ENV_CPU_COLLECTIVES, "gloo")
    if collectives != "none":
        # Only the CPU client reads this; on GPU/TPU it is harmless.
        jax.config.update("jax_cpu_collectives_implementation", collectives)
    logging.info("joining a distributed run (%s): %s", spec.source, spec.initialize_kwargs())
    jax.distributed.initialize(**spec.initialize_kwargs())
    logging.info("process %d of %d; %d local / %d global devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def is_writer() -> bool:
    """Whether this process writes logs, reports and plots (process 0 only)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches ``barrier(name)``; nothing with one process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
