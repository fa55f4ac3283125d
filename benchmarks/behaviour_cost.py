"""What the autoencoder's behavioural term costs a step: decoded networks run on images.

    python benchmarks/behaviour_cost.py [--model convnet3] [--shapes 8x32 32x128] [--json OUT]

Times one gradient of a loss on the logits of ``members`` networks on ``images`` images
(what ``generator.autoencoder.behaviour`` adds to each autoencoder step), with the
networks vmapped and run one after another (``behaviour.vectorize``), each the median of
``--repeats`` calls after a compile. Random-init networks: the cost depends on the
architecture and the counts, not on the weights. CPU_NOTES.md: XLA CPU turns a vmap over
convolution weights into a slow batched convolution.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TQDM_DISABLE", "1")

from _common import load, machine_info, median, timed_runs

INPUT_SHAPES = {"mlp3": (28, 28, 1), "convnet3": (32, 32, 3), "cnn_bn": (28, 28, 1)}


def gradient_seconds(model: str, members: int, images: int, vectorize: str,
                     repeats: int) -> float:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pdiff_jax.generator.behaviour import logits_of
    from pdiff_jax.models import get_model
    from pdiff_jax.params.subset import ParamSpec, flatten_subset

    model_def = get_model(model, num_classes=10, input_shape=INPUT_SHAPES[model])
    nets = [model_def.init(jax.random.key(i)) for i in range(members)]
    spec = ParamSpec.from_variables(nets[0], ".*")
    vectors = jnp.asarray(np.stack([np.asarray(flatten_subset(v, spec)) for v in nets]))
    x = jax.random.normal(jax.random.key(99), (images, *INPUT_SHAPES[model]))
    grad = jax.jit(jax.grad(lambda v: jnp.mean(
        logits_of(model_def, spec, None, nets[0], v, x, vectorize) ** 2)))
    return median(timed_runs(lambda: grad(vectors), repeats))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="convnet3", choices=sorted(INPUT_SHAPES))
    p.add_argument("--shapes", nargs="+", default=["8x32", "32x128"],
                   help="members x images per step")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the rows here too")
    args = p.parse_args(argv)
    rows = []
    for shape in args.shapes:
        members, images = (int(v) for v in shape.split("x"))
        times = {v: gradient_seconds(args.model, members, images, v, args.repeats)
                 for v in ("loop", "vmap")}
        rows.append({"model": args.model, "members": members, "images": images,
                     "loop_s": times["loop"], "vmap_s": times["vmap"],
                     "vmap_over_loop": times["vmap"] / times["loop"]})
        print(f"{args.model} {members} x {images}: loop {times['loop']:.3f} s, "
              f"vmap {times['vmap']:.3f} s ({times['vmap'] / times['loop']:.1f}x)", flush=True)
    print(f"machine: {machine_info()}; load {load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(), "load": load(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
