"""Are the generated networks in the zoo's alignment frame? (issue 17)

The report's NN L2 compares generated vectors with the aligned zoo as they come out of
the decoder. A generated network could still be a permuted copy of a member; this aligns
each generated network to its nearest zoo member by weight matching (which never changes
what it computes) and measures the distance again.

    python benchmarks/exp_realigned_novelty.py --workdir /tmp/ent/final
"""

from __future__ import annotations

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

from pdiff_jax import artifacts
from pdiff_jax.evaluation import novelty
from pdiff_jax.run import open_run
from pdiff_jax.zoo.alignment import (
    _join_vector,
    _split_vector,
    apply_permutations,
    permutation_spec_for,
    weight_matching,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    inp = open_run(args.workdir)
    zoo = inp.zoo
    samples, _ = artifacts.load_artifact(artifacts.artifact_dir(args.workdir, artifacts.SAMPLES),
                                         what="samples")
    gen = np.asarray(samples["vectors"], np.float32)
    pspec = permutation_spec_for(inp.model_def)
    d = np.sqrt(novelty.sq_distances(gen, zoo.vectors))
    nearest = d.argmin(1)
    before = d.min(1)
    after = np.empty_like(before)
    with threadpool_limits(limits=1, user_api="blas"):
        for i, (vec, k) in enumerate(zip(gen, nearest, strict=True)):
            member = _split_vector(zoo.vectors[k], zoo.spec)
            sample = _split_vector(vec, zoo.spec)
            perms = weight_matching(member, sample, pspec)
            moved = _join_vector(apply_permutations(sample, pspec, perms), zoo.spec)
            after[i] = np.linalg.norm(moved - zoo.vectors[k])
    print(f"{len(gen)} generated networks: NN L2 as generated mean {before.mean():.3f} "
          f"(median {np.median(before):.3f}); after weight matching each to its nearest "
          f"member mean {after.mean():.3f} (median {np.median(after):.3f}); "
          f"{int((after < before - 1e-4).sum())} of {len(gen)} got closer")


if __name__ == "__main__":
    main()
