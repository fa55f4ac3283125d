"""Do generated BatchNorm networks fail because of their generated running statistics?

On the size ladder (benchmarks/ENTIRE_NETWORKS.md §7) generation of entire cnn_bn and
ResNet networks fails, and so does the memorization baseline "member + 10 % noise". This
measures each group of a finished seed-zoo run twice: as stored, and with every
BatchNorm's running mean and variance recomputed from training images
(``pdiff_jax/evaluation/batch_stats.py``). Groups: the zoo, the autoencoder's copies of
the zoo, the run's own generated samples, members + 5 % / 10 % noise, averages of 16.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python \
        benchmarks/exp_recompute_batch_stats.py --workdir runs/ladder-cnn_bn --out FILE.json

Accuracy on the first ``--test`` test images; "best" is the member best on the first
``--train`` training images (as the report chooses it); the statistics come from the first
``--calibration`` training images. ``--members M`` measures only the first M zoo members,
their AE copies and the first M samples (a ResNet costs seconds per network here).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
from _common import load, machine_info

from pdiff_jax import api, artifacts
from pdiff_jax.evaluation import baselines, protocol
from pdiff_jax.evaluation.batch_stats import recompute_in_vectors
from pdiff_jax.evaluation.evaluator import ManyModelEvaluator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True, help="a finished seed-zoo run")
    ap.add_argument("--n", type=int, default=50, help="draws per baseline")
    ap.add_argument("--members", type=int, default=0, help="zoo members and their AE copies "
                    "to measure, and generated samples (the first ones; 0 = all)")
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--calibration", type=int, default=1000)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    run = api.load(args.workdir)
    zoo, model_def, data = run.zoo, run.model_def, run.dataset
    samples, _ = artifacts.load_artifact(
        artifacts.artifact_dir(args.workdir, artifacts.SAMPLES), what="samples")
    key = jax.random.key(0)
    first = slice(args.members or None)   # fewer networks where each one costs seconds
    groups = {
        "zoo": zoo.vectors[first],
        "AE copies": np.asarray(run.decode(run.encode(zoo.vectors[first]))),
        "p-diff": np.asarray(samples["vectors"], np.float32)[first],
        "noise_0.05": baselines.noisy_zoo(jax.random.fold_in(key, 1), zoo.vectors, 0.05,
                                          args.n, zoo.segments),
        "noise_0.1": baselines.noisy_zoo(jax.random.fold_in(key, 2), zoo.vectors, 0.1,
                                         args.n, zoo.segments),
        "average_16": baselines.average_of_random(jax.random.fold_in(key, 3), zoo.vectors,
                                                  min(16, len(zoo.vectors)), args.n),
    }
    evaluator = ManyModelEvaluator(
        model_def, zoo.base, zoo.spec,
        {"train": (data.x_train[:args.train], data.y_train[:args.train]),
         "test": (data.x_test[:args.test], data.y_test[:args.test])},
        split_point=zoo.split_point, models_per_call=20, vectorize="map")
    calibration = data.x_train[:args.calibration]
    rows, load_start, t0 = [], load(), time.perf_counter()
    for name, vectors in groups.items():
        vectors = np.asarray(vectors, np.float32)
        t = time.perf_counter()
        fresh = recompute_in_vectors(model_def, zoo.base, zoo.spec, vectors, calibration)
        recompute_s = time.perf_counter() - t
        row = {"group": name, "recompute_s": recompute_s}
        for label, v in (("stored", vectors), ("recomputed", fresh)):
            row[label] = protocol.summarize(evaluator.evaluate(v, "train")[0],
                                            evaluator.evaluate(v, "test")[0])
        rows.append(row)
        s, r = row["stored"], row["recomputed"]
        print(f"{name:<11} stored best/avg/median/min {s['best']:.2f} / {s['avg']:.2f} / "
              f"{s['median']:.2f} / {s['worst']:.2f}   recomputed {r['best']:.2f} / "
              f"{r['avg']:.2f} / {r['median']:.2f} / {r['worst']:.2f}   (n={s['n']}, "
              f"recompute {recompute_s:.1f} s)", flush=True)
    out = {"workdir": args.workdir, "model": zoo.meta["model"], "K": int(zoo.num_models),
           "D": int(zoo.spec.size), "args": vars(args), "rows": rows,
           "wall_s": time.perf_counter() - t0, "load_start": load_start, "load_end": load(),
           "machine": machine_info()}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
