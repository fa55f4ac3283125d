"""How long zoo alignment takes on a ResNet-18 seed zoo, and what it does to the spread.

    python benchmarks/bench_resnet_alignment.py --width 8 --num-models 8
    python benchmarks/bench_resnet_alignment.py --width 16 --num-models 8 --stem cifar

Members are freshly initialised ResNet-18s (CIFAR stem, 32x32x3 inputs) with random
BatchNorm scale/bias/running statistics: the cost of weight matching is the same
linear assignments as on trained members, though trained members may need a different
number of passes. Prints, for 'weight_matching' (to member 0) and 'merge_many', the
seconds, the mean L2 distance of the members to the zoo mean before and after, the
largest change of any member's eval-mode logits (must be float noise), the machine and
the load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, machine_info

from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset, merge, unflatten_subset
from pdiff_jax.zoo.alignment import align_zoo, permutation_spec_for


def _member(model_def, seed: int) -> dict:
    variables = model_def.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)

    def randomize(path, leaf):
        name = path[-1].key
        if name == "scale":
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        if name == "var":
            return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), leaf.dtype)
        if name in ("mean", "bias"):
            return jnp.asarray(rng.normal(0.0, 0.3, leaf.shape), leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(randomize, variables)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--num-models", type=int, default=8)
    ap.add_argument("--stem", default="cifar")
    args = ap.parse_args()

    model_def = get_model("resnet18", num_classes=10, input_shape=(32, 32, 3),
                          width=args.width, stem=args.stem)
    members = [_member(model_def, seed) for seed in range(args.num_models)]
    spec = ParamSpec.from_variables(members[0], ".*")
    vectors = np.stack([np.asarray(flatten_subset(v, spec)) for v in members])
    pspec = permutation_spec_for(model_def)
    print(f"resnet18 width {args.width}: D = {spec.size:,}, K = {args.num_models}, "
          f"{len(pspec.sizes)} permutation groups (largest {max(pspec.sizes.values())})")

    apply = jax.jit(model_def.apply)
    x = jax.random.normal(jax.random.key(99), (16, 32, 32, 3))
    base = members[0]

    def logits(vecs):
        return np.stack([np.asarray(apply(merge(base, unflatten_subset(jnp.asarray(v), spec)),
                                          x)) for v in vecs])

    before = logits(vectors)
    spread = lambda v: np.linalg.norm(v - v.mean(0), axis=1).mean()
    for method in ("weight_matching", "merge_many"):
        t = time.perf_counter()
        aligned = align_zoo(vectors, spec, model_def, method=method)
        seconds = time.perf_counter() - t
        change = np.abs(logits(aligned) - before).max()
        print(f"{method:>15}: {seconds:6.1f} s ({seconds / args.num_models:.2f} s/member); "
              f"spread {spread(vectors):.2f} -> {spread(aligned):.2f}; "
              f"max |logit change| {change:.1e} (logits up to {np.abs(before).max():.1f})")
    print(machine_info())
    print(load())


if __name__ == "__main__":
    main()
