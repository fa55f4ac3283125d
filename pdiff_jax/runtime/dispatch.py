"""How training work is handed to the accelerator, chosen per backend.

Two choices, both measured rather than assumed:

- *steps per dispatch*: a GPU step of a small model (the generator at D = 2,048
  takes ~2 ms) is dominated by the Python -> device launch, so several
  optimizer steps run inside one ``lax.scan``. On XLA CPU the same scan made
  conv gradients 20-90x slower (CPU_NOTES.md), so the CPU keeps one step per
  call.
- *where the training set lives*: on a GPU the host pipeline (gather, augment
  and copy every batch) bounded ResNet-18 at ~16 ms per batch of 128, so a
  data set that fits is kept on the device and batches are drawn there. On a
  CPU "the device" is host memory already; the host pipeline stays.

A third is where the generator trains: virtual CPU devices
(``--xla_force_host_platform_device_count``) exist to split many small independent
networks (the seed zoo, evaluation); a generator step gains nothing from them, and
the per-step collectives of its data parallelism aborted XLA CPU twice (a rendezvous
thread waited past its 40 s termination timeout, at load 4 and 15, in the
autoencoder stage of configs/convnet3.py:mnist). So in one CPU process the
generator trains on the first device.

A fourth follows from the first: at ~1,000 generator steps per second a
checkpoint every 500 steps (~0.3 s each) would cost as much as the training, so
on accelerators checkpoints are at least ``MIN_CHECKPOINT_SECONDS`` apart.

``0`` / ``'auto'`` in the configs mean "this module's choice for the backend".
"""

from __future__ import annotations

import jax

from pdiff_jax.config.choices import PLACEMENTS
from pdiff_jax.runtime import sharding

# Steps per dispatch when the config says 0 (auto), per backend.
AUTO_STEPS = {"cpu": 1, "gpu": 100, "tpu": 100}
# A data set is made device-resident when it takes at most this fraction of
# one device's memory (the rest is for the model, activations and the zoo).
RESIDENT_FRACTION = 0.25
# Least seconds between two checkpoints of one loop, per backend (interrupted work
# lost is at most this much); the CPU saves at every checkpoint_every as before.
MIN_CHECKPOINT_SECONDS = {"cpu": 0.0, "gpu": 30.0, "tpu": 30.0}


def platform() -> str:
    """'cpu', 'gpu' or 'tpu': the backend the default device belongs to."""
    return jax.devices()[0].platform


def steps_per_dispatch(requested: int) -> int:
    """``requested`` if positive, else the backend's choice (``AUTO_STEPS``)."""
    if requested < 0:
        raise ValueError(f"steps_per_dispatch must be >= 0 (0 = auto), got {requested}")
    return int(requested) or AUTO_STEPS.get(platform(), 1)


def min_checkpoint_seconds() -> float:
    return MIN_CHECKPOINT_SECONDS.get(platform(), 0.0)


def device_memory_bytes() -> int | None:
    """Memory of one device as the runtime reports it (None where it does not: CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def use_device_data(placement: str, nbytes: int) -> bool:
    """Whether a training set of ``nbytes`` should live on the device.

    'host' and 'device' are obeyed ('device' on a CPU keeps the arrays in host
    memory but draws batches inside the jitted step, which tests use); 'auto'
    picks the device on accelerators when the data fits ``RESIDENT_FRACTION``
    of its memory.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"data placement must be one of {PLACEMENTS}, got {placement!r}")
    if placement != "auto":
        return placement == "device"
    if platform() == "cpu":
        return False
    limit = device_memory_bytes()
    return limit is not None and nbytes <= RESIDENT_FRACTION * limit


def generator_mesh(mesh):
    """The mesh the autoencoder and diffusion train on: ``mesh``, but only its first
    device when it is several virtual CPU devices of one process (see above)."""
    if platform() == "cpu" and jax.process_count() == 1 and mesh.devices.size > 1:
        return sharding.make_mesh(list(mesh.devices.flat)[:1])
    return mesh
