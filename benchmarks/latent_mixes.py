"""Networks between members: decoded latent mixes against parameter blends of the same pairs.

    python benchmarks/latent_mixes.py --workdir runs/mlp3 --a 0.2 0.3 0.4 [--json OUT]

For a finished entire-network run, ``n`` random pairs of zoo members (i, j): the decoded
latent mix decode((1 - a) z_i + a z_j) and the parameter blend (1 - a) x_i + a x_j, each
measured by the run's own evaluator (median test accuracy) and placed on the frontier's
novelty axis (``nn_iou_any`` over the group, zoo members and the group itself). A decoder
trained with ``generator.autoencoder.behaviour.mix`` should put better networks between
members than the blends (results/frontier-mnist.md, session 3).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--a", type=float, nargs="+", default=[0.2, 0.3, 0.4])
    p.add_argument("--n", type=int, default=100, help="member pairs per weight")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair draw")
    p.add_argument("--json", help="write the rows here too")
    args = p.parse_args(argv)

    from pdiff_jax.evaluation.frontier import novelty_of_group
    from pdiff_jax.evaluation.groups import measure
    from pdiff_jax.run import open_run

    run = open_run(args.workdir)
    zoo, evaluator, generator = run.zoo, run.group_evaluator, run.generator()
    latents = np.asarray(generator.zoo_latents)
    zoo_measured = measure(evaluator, zoo.vectors)
    rng = np.random.default_rng(args.seed)
    k = len(zoo.vectors)
    first = rng.integers(0, k, args.n)
    second = (first + rng.integers(1, k, args.n)) % k   # never a member with itself
    rows = []
    print("| a | kind | median | nn_iou_any | nn_max_iou |\n|---|---|---|---|---|")
    for a in args.a:
        groups = {"latent mix": generator.decode((1 - a) * latents[first] + a * latents[second]),
                  "parameter blend": (1 - a) * zoo.vectors[first] + a * zoo.vectors[second]}
        for kind, vectors in groups.items():
            measured = measure(evaluator, np.asarray(vectors, np.float32))
            novelty = novelty_of_group(zoo_measured.wrong, measured.wrong, zoo.vectors,
                                       measured.vectors)
            row = {"a": a, "kind": kind, "n": args.n,
                   "median": float(np.median(measured.test_acc)), **novelty}
            rows.append(row)
            print(f"| {a:g} | {kind} | {row['median']:.2f} | {row['nn_iou_any']:.3f} | "
                  f"{row['nn_max_iou']:.3f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"workdir": str(args.workdir), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
