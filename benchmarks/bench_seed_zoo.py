"""The MLP-3 seed zoo: vmapped training of many models vs one model at a time.

    python benchmarks/bench_seed_zoo.py                        # 50 models each way
    python benchmarks/bench_seed_zoo.py --models 50 --examples 10000 --epochs 1 --repeats 3

Bundled MNIST (``pdiff_jax.data.load_dataset('mnist', data_dir=<empty tmp dir>)``),
the first ``--examples`` training images, MLP-3 (784-50-25-10), the configs/mlp3.py
recipe (SGD lr 0.05 momentum 0.9, batch 128, constant schedule, 1 epoch). Two ways,
each through ``training.train_classifiers_batched`` exactly as the zoo stage calls it:

* batched: one call with ``--models`` seeds (= zoo.models_per_step 50);
* one at a time: ``--models`` calls with one seed each (= zoo.models_per_step 1).

Times include each call's compilation, as the zoo pays it. Per-model times are
extrapolated linearly to K = 200 (the batched way = 4 calls of 50).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

from _common import load, machine_info, median

from pdiff_jax.data import load_dataset
from pdiff_jax.models import get_model
from pdiff_jax.zoo.training import train_classifiers_batched

RECIPE = dict(epochs=1, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9,
              weight_decay=0.0, schedule="constant")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--examples", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the batched call")
    ap.add_argument("--loop-repeats", type=int, default=1, help="repeats of the one-by-one loop")
    ap.add_argument("--target-k", type=int, default=200)
    args = ap.parse_args()
    recipe = dict(RECIPE, epochs=args.epochs)

    with tempfile.TemporaryDirectory() as tfds_dir:
        ds = load_dataset("mnist", data_dir=tfds_dir, max_train=args.examples)
    x, y = ds.x_train[:args.examples], ds.y_train[:args.examples]
    model = get_model("mlp3", num_classes=10, input_shape=tuple(x.shape[1:]))
    seeds = list(range(args.models))
    steps = args.epochs * (len(x) // recipe["batch_size"])

    batched, batched_loads = [], []
    for r in range(args.repeats):
        t = time.perf_counter()
        out = train_classifiers_batched(model, [s + 1000 * r for s in seeds], x, y, **recipe)
        batched.append(time.perf_counter() - t)
        batched_loads.append(load())
    assert len(out) == args.models
    loop, loop_loads = [], []
    for _ in range(args.loop_repeats):
        t = time.perf_counter()
        for s in seeds:
            train_classifiers_batched(model, [s], x, y, **recipe)
        loop.append(time.perf_counter() - t)
        loop_loads.append(load())

    tb, tl = median(batched), median(loop)
    M, K = args.models, args.target_k
    print(f"Machine: {machine_info()}\n")
    print(f"MLP-3 on bundled MNIST, {len(x):,} examples, {args.epochs} epoch(s) = {steps} steps "
          f"of batch {recipe['batch_size']} per model; {M} models each way; times include "
          "compilation.\n")
    print("| way | time for the models | per model | K = 200 (extrapolated) | speed-up | runs | "
          "load after each run |")
    print("|---|---|---|---|---|---|---|")
    print(f"| batched, models_per_step = {M} (one vmapped step) | {tb:.2f} s | "
          f"{1000 * tb / M:.1f} ms | {tb * K / M:.1f} s | {tl / tb:.1f}x | "
          f"{', '.join(f'{v:.2f}' for v in batched)} s | {'; '.join(batched_loads)} |")
    print(f"| one at a time, models_per_step = 1 | {tl:.2f} s | {1000 * tl / M:.1f} ms | "
          f"{tl * K / M:.1f} s | 1.0x | {', '.join(f'{v:.2f}' for v in loop)} s | "
          f"{'; '.join(loop_loads)} |")
    finite = all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(out))
    print(f"\n(all batched parameters finite: {finite})")


if __name__ == "__main__":
    main()
