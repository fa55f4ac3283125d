"""ConvNet-3 seed zoo: one training step of G networks, three ways, on this CPU.

    python benchmarks/bench_seed_zoo_grouped.py                     # G in (8, 32), 5 steps each
    python benchmarks/bench_seed_zoo_grouped.py --groups 8 32 --repeats 5 --batch 128

ConvNet-3 (32 channels, BatchNorm) on 32x32x3 inputs (MNIST as configs/convnet3.py:mnist
feeds it), batch 128 per network, SGD momentum 0.9 + weight decay, the zoo recipe.
Random images: the time of a step does not depend on the pixels.

* loop:    G calls per step of the per-network jitted step (zoo.models_per_step = 1);
* vmap:    one jitted ``vmap`` of that step over G stacked networks (models_per_step = G);
* grouped: one jitted step of ``stacked_training.GroupedConvNet3`` (one grouped conv per layer);
* unrolled: one jitted step holding G copies of the per-network step
  (``stacked_training.compiled_unrolled_step``), the networks split over the devices.

``--virtual-devices N`` sets ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before
JAX starts (the loop and vmap ways still run on one device; unrolled uses all N).

Each way: one warm-up call (compilation), then the median of ``--repeats`` timed steps
(``block_until_ready``). Prints a markdown table with ms per step of all G networks, ms per
network-step and the speed-up over the loop, plus the machine and the load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _virtual_devices_from_argv() -> None:
    """XLA reads its flags when JAX starts: set the device count before the imports."""
    if "--virtual-devices" in sys.argv:
        n = int(sys.argv[sys.argv.index("--virtual-devices") + 1])
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={n}").strip()


_virtual_devices_from_argv()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, machine_info, median, timed_runs  # noqa: E402

from pdiff_jax.models import get_model  # noqa: E402
from pdiff_jax.runtime import sharding  # noqa: E402
from pdiff_jax.runtime.optimizer import make_optimizer  # noqa: E402
from pdiff_jax.zoo import (  # noqa: E402
    stacked_training,
    training,
)

RECIPE = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ways", nargs="+", default=["loop", "vmap", "grouped", "unrolled"])
    ap.add_argument("--virtual-devices", type=int, default=1)
    args = ap.parse_args()

    model = get_model("convnet3", num_classes=10, input_shape=(32, 32, 3))
    tx = make_optimizer(total_steps=1000, **RECIPE)
    rng = np.random.default_rng(0)
    rows = []
    for g in args.groups:
        x = jnp.asarray(rng.normal(size=(g, args.batch, 32, 32, 3)).astype(np.float32))
        y = jnp.asarray(rng.integers(0, 10, size=(g, args.batch)).astype(np.int32))
        def fresh_members(g=g):  # the steps donate their states: each way gets its own copy
            return [model.init(jax.random.key(s)) for s in range(g)]
        times = {}
        if "loop" in args.ways:
            single = training.compiled_train_step(model, tx)
            states = [training.init_train_state(m, tx) for m in fresh_members()]

            def loop_step(states=states, single=single, x=x, y=y):
                for i in range(len(states)):
                    states[i], _ = single(states[i], x[i], y[i])
                return [s.params for s in states]
            times["loop"] = timed_runs(loop_step, args.repeats)
        if "vmap" in args.ways:
            batched = training.compiled_train_step(model, tx, batched=True)
            box = [jax.vmap(lambda v: training.init_train_state(v, tx))(
                jax.tree.map(lambda *a: jnp.stack(a), *fresh_members()))]

            def vmap_step(box=box, batched=batched, x=x, y=y):
                box[0], _ = batched(box[0], x, y)
                return box[0].params
            times["vmap"] = timed_runs(vmap_step, args.repeats)
        if "grouped" in args.ways:
            module = stacked_training.grouped_model(model, g)
            step = stacked_training.compiled_grouped_step(module, tx)
            box = [training.init_train_state(stacked_training.group_variables(fresh_members()), tx)]

            def grouped_step(box=box, step=step, x=x, y=y):
                box[0], _ = step(box[0], x, y)
                return box[0].params
            times["grouped"] = timed_runs(grouped_step, args.repeats)
        if "unrolled" in args.ways:
            mesh = sharding.make_mesh()
            ustep = stacked_training.compiled_unrolled_step(model, tx, mesh)
            states = [training.init_train_state(m, tx) for m in fresh_members()]
            box = [sharding.shard_batch(jax.tree.map(lambda *a: jnp.stack(a), *states), mesh)]
            xs, ys = sharding.shard_batch((x, y), mesh)

            def unrolled_step(box=box, step=ustep, x=xs, y=ys):
                box[0], _ = step(box[0], x, y)
                return box[0].params
            times["unrolled"] = timed_runs(unrolled_step, args.repeats)
        base = median(times["loop"]) if "loop" in times else None
        for way, ts in times.items():
            t = median(ts)
            rows.append((g, way, t, base / t if base else float("nan"), load(),
                         ", ".join(f"{1000 * v:.0f}" for v in ts)))
            # Progress on stderr after each G: the grouped way can take many minutes.
            print(f"G={g} {way}: {1000 * t:.0f} ms per step ({load()})", file=sys.stderr,
                  flush=True)

    print(f"Machine: {machine_info()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
          f"{jax.device_count()} device(s)\n")
    print(f"ConvNet-3, 32x32x3, batch {args.batch} per network; median of {args.repeats} "
          "steps after one compiling call.\n")
    print("| G | way | ms per step (all G) | ms per network-step | speed-up vs loop | load | "
          "runs (ms) |")
    print("|---|---|---|---|---|---|---|")
    for g, way, t, speedup, ld, runs in rows:
        print(f"| {g} | {way} | {1000 * t:.0f} | {1000 * t / g:.1f} | {speedup:.2f}x | {ld} | "
              f"{runs} |")


if __name__ == "__main__":
    main()
