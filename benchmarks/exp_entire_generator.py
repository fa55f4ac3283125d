"""Generator settings for an entire-network zoo, by measurement (issue 17).

Reads the zoo of a finished collect stage once, then for each variant trains the
autoencoder and the diffusion model with the library's own stage functions, samples,
and measures: reconstruction accuracy of the zoo members through the AE, how many latent
dimensions vary, p-diff best (by train) / avg / median, and novelty (NN L2 and NN max
IoU against the zoo, beside the zoo's own nearest-neighbour values).

    python benchmarks/exp_entire_generator.py --workdir /tmp/ent/base \
        --variant 'name:autoencoder.train.steps=300,generator...' ...

A variant is ``name:key=value,key=value`` with keys relative to ``generator.``
(e.g. ``autoencoder.model.hidden=128``; tuples as ``64/64``). One JSON line per variant
is appended to ``--out``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load

from pdiff_jax.config.defaults import config_file
from pdiff_jax.evaluation import novelty, protocol
from pdiff_jax.generator import SamplerSettings, train_autoencoder, train_diffusion
from pdiff_jax.generator.trained import TrainedGenerator
from pdiff_jax.run import open_run


def parse_value(text: str):
    if "/" in text:
        return tuple(parse_value(t) for t in text.split("/"))
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_variant(gen: dict, spec: str) -> tuple[str, dict]:
    name, _, body = spec.partition(":")
    gen = copy.deepcopy(gen)
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        *path, leaf = key.split(".")
        node = gen
        for p in path:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"{key} is not a generator setting")
        node[leaf] = parse_value(value)
    return name, gen


def summary(evaluator, vectors, zoo_wrong, zoo_vectors) -> dict:
    train, _ = evaluator.evaluate(vectors, "train")
    test, wrong = evaluator.evaluate(vectors, "test")
    s = protocol.summarize(train, test)
    g = novelty.group_metrics(zoo_wrong, wrong, zoo_vectors, vectors)
    return {"best": s["best"], "avg": s["avg"], "median": s["median"], "worst": s["worst"],
            "nn_l2": g["nn_l2_gen_mean"], "nn_max_iou": g["max_iou_gen_mean"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True, help="a run whose collect stage finished")
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--out", default="/tmp/ent/exp.jsonl")
    ap.add_argument("--n", type=int, default=100, help="generated networks per variant")
    ap.add_argument("--seed", type=int, default=0, help="keys of the generator stages")
    ap.add_argument("--config", default="configs/mlp3.py",
                    help="the generator settings variants start from (this code's config)")
    args = ap.parse_args()

    inp = open_run(args.workdir)
    zoo = inp.zoo
    evaluator = inp.evaluator(zoo.base, zoo.spec, zoo.split_point)
    z_train, _ = evaluator.evaluate(zoo.vectors, "train")
    z_test, z_wrong = evaluator.evaluate(zoo.vectors, "test")
    ref = novelty.reference_metrics(z_wrong, zoo.vectors)
    orig = protocol.original_summary(z_test, z_train)
    print(f"zoo K={zoo.num_models} D={zoo.spec.size}: best {orig['best']:.2f} by-train "
          f"{orig['best_by_train']:.2f} median {orig['median']:.2f}; NN L2 "
          f"{ref['nn_l2_orig_mean']:.3f}, NN max IoU {ref['max_iou_orig_mean']:.3f}", flush=True)
    base_gen = config_file(args.config).generator.to_dict()
    for spec in args.variant:
        name, gen = apply_variant(base_gen, spec)
        row = {"variant": name, "spec": spec, "seed": args.seed, "load_start": load()}
        t0 = time.perf_counter()
        key = functools.partial(lambda i, s: jax.random.fold_in(jax.random.key(i), s),
                                s=args.seed)
        ae_arrays, ae_meta = train_autoencoder(
            zoo.vectors, key=key(1), segments=zoo.segments,
            normalization=gen["normalization"], model=gen["autoencoder"]["model"],
            train=gen["autoencoder"]["train"], mesh=inp.mesh)
        row["ae_s"] = round(time.perf_counter() - t0, 1)
        generator = TrainedGenerator(ae_arrays, ae_meta)
        recon = generator.decode(ae_arrays["latents"])
        r_test, _ = evaluator.evaluate(recon, "test")
        row["recon_acc"] = {"best": float(r_test.max()), "median": float(np.median(r_test)),
                            "min": float(r_test.min())}
        lat = ae_arrays["latents"].reshape(zoo.num_models, -1)
        row["latent_std"] = np.round(np.sort(lat.std(0))[::-1], 3).tolist()
        t0 = time.perf_counter()
        d_arrays, d_meta = train_diffusion(
            ae_arrays["latents"], key=key(2), process=gen["diffusion"]["process"],
            model=gen["diffusion"]["model"], train=gen["diffusion"]["train"], mesh=inp.mesh)
        row["diffusion_s"] = round(time.perf_counter() - t0, 1)
        generator = TrainedGenerator(ae_arrays, ae_meta, d_arrays, d_meta)
        t0 = time.perf_counter()
        vectors = generator.sample(key(3), args.n, SamplerSettings(**gen["sampling"]))
        row["sample_s"] = round(time.perf_counter() - t0, 1)
        row["pdiff"] = summary(evaluator, vectors, z_wrong, zoo.vectors)
        row["zoo"] = {"best_by_train": orig["best_by_train"], "median": orig["median"],
                      "nn_l2": ref["nn_l2_orig_mean"], "nn_max_iou": ref["max_iou_orig_mean"]}
        row["load_end"] = load()
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
