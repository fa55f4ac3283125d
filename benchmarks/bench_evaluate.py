"""Evaluating many ResNet-18 BN-subset parameter sets vs one full forward (issue 6).

    python benchmarks/bench_evaluate.py                          # N=500 images, 100 models
    python benchmarks/bench_evaluate.py --images 500 --models 100 --repeats 3 --map-models 10

CIFAR-shaped inputs (32x32x3, 10 classes), RANDOM images and labels (timing only), a
freshly initialised ResNet-18 (CIFAR stem) and the default subset (layer4_1 bn1+bn2
scale+bias, D = 2,048). Rows:

* one full-model forward on the N images (jit, one call, eval mode);
* 100 subset models through ``ManyModelEvaluator`` with the cached frozen head
  (``split_point`` = ``model.split_point_for``), 'vmap' and 'map': the one-off head
  computation (evaluator construction) and ``evaluate`` are timed separately;
* the same without caching (``split_point=None``); 'map' without caching runs the whole
  network once per model, so it is timed on ``--map-models`` models and scaled to
  ``--models`` (stated in the table);
* for comparison, the subset layer4_1/bn2 alone (``--bn2-only``), whose tail after the
  split has no convolution;
* XLA's FLOP count (``cost_analysis``) of the full forward and of one model's tail, and a
  prototype of the tail's dominant conv (layer4_1/conv2) as one im2col GEMM over all models.

Target: 100 models cost at most 2x one full forward on the same images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

from _common import load, machine_info, median, timed_runs

from pdiff_jax.evaluation.evaluator import ManyModelEvaluator, compute_tail_inputs
from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset, merge, unflatten_subset


def _flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, list):
        cost = cost[0]
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=500, help="N, images evaluated per model")
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--map-models", type=int, default=10,
                    help="models for the uncached 'map' row (scaled to --models)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-uncached", action="store_true")
    ap.add_argument("--bn2-only", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the subset layer4_1/bn2 alone (its tail has no conv)")
    ap.add_argument("--gemm-images", type=int, default=10,
                    help="images per chunk in the im2col-GEMM prototype")
    args = ap.parse_args()

    model = get_model("resnet18", num_classes=10, input_shape=(32, 32, 3))
    variables = jax.device_get(model.init(jax.random.key(0)))
    spec = ParamSpec.from_variables(variables, model)
    split = model.split_point_for(spec.names)
    rng = np.random.default_rng(0)
    N, M = args.images, args.models
    x = rng.normal(size=(N, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=(N,)).astype(np.int32)
    base_vec = np.asarray(flatten_subset(variables, spec))
    vectors = base_vec + 0.01 * rng.normal(size=(M, spec.size)).astype(np.float32)
    rows = []   # (what, seconds, ratio-to-full, details, load)

    # One full forward on N images.
    fwd = jax.jit(lambda v, xb: model.apply(v, xb))
    xj = jnp.asarray(x)
    ts = timed_runs(lambda: fwd(variables, xj).block_until_ready(), args.repeats)
    t_full = median(ts)
    rows.append(("1 full ResNet-18 forward", t_full, 1.0, f"median of {len(ts)}", load()))

    def evaluator_rows(split_point, vectorize, n_models, label, scale_note="", sp=spec,
                       vecs=vectors):
        t0 = time.perf_counter()
        ev = ManyModelEvaluator(model, variables, sp, {"test": (x, y)},
                                split_point=split_point, batch_size=N, models_per_call=n_models,
                                vectorize=vectorize)
        t_ctor = time.perf_counter() - t0
        vec = vecs[:n_models]
        t1 = time.perf_counter()
        acc, _ = ev.evaluate(vec, "test")      # compiles
        t_first = time.perf_counter() - t1
        ts = timed_runs(lambda: ev.evaluate(vec, "test"), args.repeats, warmup=0)
        t_eval = median(ts) * M / n_models
        note = f"median of {len(ts)}; first call (compile) {t_first:.1f} s"
        if n_models != M:
            note += f"; measured on {n_models} models, x{M / n_models:g}{scale_note}"
        if split_point is not None:
            # The head alone, warm: compute_tail_inputs jits a new partial on every call,
            # so time it twice and keep the second (the first includes its compile).
            t2 = time.perf_counter()
            compute_tail_inputs(model, variables, x, split_point, batch_size=N)
            t_head_first = time.perf_counter() - t2
            t3 = time.perf_counter()
            compute_tail_inputs(model, variables, x, split_point, batch_size=N)
            t_head = time.perf_counter() - t3
            rows.append((f"{label}, head (one-off)", t_head, t_head / t_full,
                         f"compute_tail_inputs, 2nd call; 1st call {t_head_first:.2f} s; "
                         f"evaluator construction {t_ctor:.2f} s", load()))
            rows.append((f"{label}, {M} models excl. head", t_eval, t_eval / t_full, note,
                         load()))
            rows.append((f"{label}, {M} models incl. head", t_eval + t_head,
                         (t_eval + t_head) / t_full, "sum of the two rows above", load()))
        else:
            rows.append((f"{label}, {M} models", t_eval, t_eval / t_full, note, load()))
        return acc

    for vec_mode in ("vmap", "map"):
        evaluator_rows(split, vec_mode, M, f"cached head (split '{split}'), {vec_mode}")
    if args.bn2_only:
        # A subset whose tail has no convolution: layer4_1/bn2 alone (D = 1,024).
        sp2 = ParamSpec.from_variables(variables, r"^params/layer4_1/bn2/(scale|bias)$")
        split2 = model.split_point_for(sp2.names)
        v2 = np.asarray(flatten_subset(variables, sp2))
        v2 = v2 + 0.01 * rng.normal(size=(M, sp2.size)).astype(np.float32)
        for vec_mode in ("vmap", "map"):
            evaluator_rows(split2, vec_mode, M, f"bn2-only subset (D = {sp2.size}, split "
                           f"'{split2}'), {vec_mode}", sp=sp2, vecs=v2)
    if not args.skip_uncached:
        evaluator_rows(None, "vmap", M, "no cache (split_point=None), vmap")
        evaluator_rows(None, "map", min(args.map_models, M), "no cache (split_point=None), map")

    # FLOPs: the full forward vs one model's tail (XLA cost analysis).
    carry = model.apply(variables, xj, stop=split)
    f_full = _flops(lambda v, xb: model.apply(v, xb), variables, xj)

    def tail(vec, c):
        return model.apply(merge(variables, unflatten_subset(vec, spec)), c, start=split)

    f_tail = _flops(tail, jnp.asarray(vectors[0]), carry)
    conv2 = N * 100 * 512 * 512 * 2   # 4x4 output, 3x3 taps, 'SAME': 10 x 10 valid taps

    # Prototype: layer4_1/conv2 for all M models as one GEMM (im2col) vs the vmapped conv.
    n = min(args.gemm_images, N)
    kernel = jnp.asarray(variables["params"]["layer4_1"]["conv2"]["kernel"])   # [3,3,512,512]
    h = jax.random.normal(jax.random.key(1), (M * n, 4, 4, 512))
    dn = ("NHWC", "HWIO", "NHWC")
    conv = jax.jit(lambda a: jax.lax.conv_general_dilated(a, kernel, (1, 1), "SAME",
                                                          dimension_numbers=dn))

    @jax.jit
    def gemm(a):
        p = jnp.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
        cols = jnp.concatenate([p[:, i:i + 4, j:j + 4, :] for i in range(3) for j in range(3)],
                               axis=-1)                                   # [B,4,4,9*512]
        return cols.reshape(-1, 9 * 512) @ kernel.reshape(9 * 512, 512)

    err = float(jnp.max(jnp.abs(conv(h).reshape(-1, 512) - gemm(h))))
    t_conv = median(timed_runs(lambda: conv(h).block_until_ready(), args.repeats))
    t_gemm = median(timed_runs(lambda: gemm(h).block_until_ready(), args.repeats))
    gflop = M * n * 100 * 512 * 512 * 2 / 1e9

    print(f"Machine: {machine_info()}\n")
    print(f"ResNet-18 (CIFAR stem), subset D = {spec.size} ({', '.join(spec.names)}), split "
          f"point '{split}', N = {N} random 32x32x3 images, {M} parameter sets; "
          f"{jax.device_count()} device(s).\n")
    print("| what | time | / full forward | target (100 models <= 2x full) | details | load |")
    print("|---|---|---|---|---|---|")
    for what, t, r, det, ld in rows:
        tgt = ""
        if f"{M} models" in what and "bn2-only" not in what:
            tgt = "met" if r <= 2 else "MISSED"
        print(f"| {what} | {t:.3f} s | {r:.2f}x | {tgt} | {det} | {ld} |")
    print(f"\nFLOPs (XLA cost_analysis, N = {N}): full forward {f_full / 1e9:.1f} GFLOP; one "
          f"model's tail {f_tail / 1e9:.2f} GFLOP (layer4_1/conv2 alone "
          f"{conv2 / 1e9:.2f}, padding taps not counted); "
          f"{M} tails = {M * f_tail / 1e9:.1f} GFLOP = {M * f_tail / f_full:.2f}x the full "
          "forward.\n")
    print(f"layer4_1/conv2 for {M} models x {n} images ({gflop:.1f} GFLOP): lax.conv "
          f"{t_conv:.3f} s ({gflop / t_conv:.0f} GFLOP/s), im2col + GEMM {t_gemm:.3f} s "
          f"({gflop / t_gemm:.0f} GFLOP/s); max |diff| {err:.1e}. Full forward: "
          f"{f_full / 1e9 / t_full:.0f} GFLOP/s.")


if __name__ == "__main__":
    main()
