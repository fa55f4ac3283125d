"""Re-align a collected seed zoo with another ``zoo.align`` method into a new workdir, and
measure what the memorization baselines see (issue 17).

    python benchmarks/exp_realign_zoo.py --workdir /tmp/ent/base --out /tmp/ent/mm \
        --method merge_many

Copies ``config.json`` (with ``zoo.align`` changed) and writes the re-aligned zoo, so the
generator stages can run in ``--out`` exactly as after a collect stage with that method.
Prints the zoo's spread (mean L2 to its mean, NN L2), the average of 16 and the ensemble.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load

from pdiff_jax import artifacts
from pdiff_jax.evaluation import baselines, novelty
from pdiff_jax.run import open_run
from pdiff_jax.zoo.alignment import align_zoo
from pdiff_jax.zoo.store import save_zoo


def describe(name, evaluator, vectors):
    avg16 = np.asarray(baselines.average_of_random(jax.random.key(0), vectors, 16, 100))
    a16, _ = evaluator.evaluate(avg16, "test")
    ens, _ = evaluator.evaluate(np.asarray(baselines.ensemble(vectors)), "test")
    d = np.sqrt(novelty.sq_distances(vectors, vectors))
    np.fill_diagonal(d, np.inf)
    spread = np.linalg.norm(vectors - vectors.mean(0), axis=1).mean()
    print(f"{name:<16} L2 to mean {spread:.3f}  NN L2 {d.min(1).mean():.3f}  average_16 mean "
          f"{a16.mean():.2f} median {np.median(a16):.2f}  ensemble {ens[0]:.2f}  ({load()})",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", default="merge_many")
    args = ap.parse_args()
    inp = open_run(args.workdir)
    zoo = inp.zoo
    evaluator = inp.evaluator(zoo.base, zoo.spec, zoo.split_point)
    describe("as collected", evaluator, zoo.vectors)
    t = time.perf_counter()
    vectors = align_zoo(zoo.vectors, zoo.spec, inp.model_def, method=args.method)
    print(f"{args.method}: {time.perf_counter() - t:.1f} s")
    test_acc, _ = evaluator.evaluate(vectors, "test")
    print(f"max accuracy change per member: {np.abs(test_acc - zoo.test_acc).max():.4f}")
    describe(args.method, evaluator, vectors)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((Path(args.workdir) / artifacts.CONFIG_JSON).read_text())
    config["zoo"]["align"] = args.method
    (out / artifacts.CONFIG_JSON).write_text(json.dumps(config, indent=1, sort_keys=True))
    meta = dict(zoo.meta, config=dict(zoo.meta["config"], align=args.method))
    save_zoo(artifacts.artifact_dir(out, artifacts.ZOO),
             dataclasses.replace(zoo, vectors=vectors, meta=meta))


if __name__ == "__main__":
    main()
