"""Host memory of the zoo normalizer with its principal basis: dense rows vs implicit
coefficients (``generator.normalization.basis``; pdiff_jax/generator/implicit_basis.py).

    python benchmarks/bench_normalizer_memory.py --num-models 50 --dim 2000000

Each variant runs in a fresh process on the same random zoo f32[K, D] (``--segments``
tensors of per-tensor scales, like a whole network), with the entire-network
generator's settings (mode 'tensor', components 256 = all K - 1). Measured per phase,
as peak resident memory (VmHWM, reset between phases through /proc/self/clear_refs)
minus the resident memory before it, i.e. what the phase needs beyond the zoo:

  fit     fit_normalizer(zoo): the statistics and the principal basis
  apply   normalize(zoo) then denormalize of those coordinates, as train_autoencoder
          does (the f32[K, D] reconstruction it returns is counted: both variants make it)

plus the bytes the normalizer keeps (what the autoencoder artifact stores, and for
'implicit' the zoo it reads, which the run holds anyway), the seconds of each phase,
and how far the two variants' reconstructions of the zoo are from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, machine_info, run_child


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # resets VmHWM to the current VmRSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _phase(fn):
    """(result, GB of peak RSS above the RSS at the start, seconds)."""
    resettable = _reset_peak()
    before = _status_kb("VmRSS")
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    peak = _status_kb("VmHWM") if resettable else float("nan")
    return out, (peak - before) / 2**20, seconds


def child(args) -> None:
    from pdiff_jax.generator.normalize import denormalize, fit_normalizer, normalize

    K, D = args.num_models, args.dim
    rng = np.random.default_rng(0)
    sizes = np.diff(np.linspace(0, D, args.segments + 1).astype(int))
    scales = np.repeat(np.exp(rng.normal(0, 1, args.segments)), sizes).astype(np.float32)
    zoo = np.empty((K, D), np.float32)
    for k in range(K):   # row by row: no float64 zoo in this process's peak
        zoo[k] = rng.standard_normal(D, dtype=np.float32) * scales
    zoo_gb = zoo.nbytes / 2**30
    norm, fit_gb, fit_s = _phase(lambda: fit_normalizer(
        zoo, list(sizes), mode="tensor", components=256, basis=args.basis))
    stored = sum(np.asarray(v).nbytes for v in norm.arrays().values()) / 2**30

    def apply():
        return denormalize(norm, normalize(norm, zoo))

    recon, apply_gb, apply_s = _phase(apply)
    err = float(np.linalg.norm(recon - zoo) / np.linalg.norm(zoo))
    print(json.dumps({"basis": args.basis, "K": K, "D": D, "zoo_gb": zoo_gb,
                      "fit_gb": fit_gb, "fit_s": fit_s, "apply_gb": apply_gb,
                      "apply_s": apply_s, "stored_gb": stored,
                      "rel_recon_error": err, "out_dim": norm.out_dim}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-models", type=int, default=50)
    ap.add_argument("--dim", type=int, default=2_000_000)
    ap.add_argument("--segments", type=int, default=62, help="tensors per vector")
    ap.add_argument("--basis", default=None, help="run one variant in this process")
    args = ap.parse_args()
    if args.basis:
        child(args)
        return
    print(f"machine: {machine_info()}; load {load()}")
    print(f"zoo f32[{args.num_models}, {args.dim:,}], {args.segments} tensors; mode 'tensor', "
          "components 256\n")
    print("| basis | zoo | fit: peak beyond the zoo | fit s | apply: peak beyond the zoo | "
          "apply s | normalizer stores | relative reconstruction error |")
    print("|---|---|---|---|---|---|---|---|")
    for basis in ("dense", "implicit"):
        r = run_child([__file__, f"--num-models={args.num_models}", f"--dim={args.dim}",
                       f"--segments={args.segments}", f"--basis={basis}"])
        if "error" in r:
            print(f"| {basis} | failed: {r['error'][:300]} |")
            continue
        print(f"| {basis} | {r['zoo_gb']:.2f} GB | {r['fit_gb']:.2f} GB | {r['fit_s']:.1f} | "
              f"{r['apply_gb']:.2f} GB | {r['apply_s']:.1f} | {r['stored_gb']:.3f} GB | "
              f"{r['rel_recon_error']:.1e} |")
    print(f"\nload after: {load()}")


if __name__ == "__main__":
    main()
