"""What zoo alignment does to the memorization baselines of an entire-network seed zoo.

    python benchmarks/bench_alignment_baselines.py --workdir /tmp/mlp3_align      # configs/mlp3.py
    python benchmarks/bench_alignment_baselines.py --workdir W --num-models 64   # a smaller zoo

Collects (or reuses, from ``--workdir``) the configs/mlp3.py seed zoo on the bundled
MNIST with ``zoo.align = 'none'``, aligns the same vectors with weight matching
(``alignment.align_zoo``; the networks are unchanged, only hidden units are reordered),
and draws the memorization baselines of ``baselines.make_baselines`` (noise, average of 16,
per-coordinate Gaussian fit, the ensemble) on each zoo with the same key. Prints test
accuracies (mean / median / best over the draws), the mean L2 distance of the members to
member 0, the alignment time, the machine and the load.
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

from _common import load, machine_info

from pdiff_jax.config.defaults import config_file
from pdiff_jax.data import load_dataset
from pdiff_jax.evaluation import baselines
from pdiff_jax.models import get_model
from pdiff_jax.pipeline import run_pipeline
from pdiff_jax.run import open_run
from pdiff_jax.zoo.alignment import align_zoo
from pdiff_jax.zoo.store import load_zoo

ROOT = Path(__file__).resolve().parent.parent


def _config(num_models: int):
    config = config_file(ROOT / "configs" / "mlp3.py")
    if num_models:
        config.zoo.num_models = num_models
    return config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True, help="the unaligned zoo is kept (and reused) here")
    ap.add_argument("--num-models", type=int, default=0, help="K (0 = the config's 200)")
    ap.add_argument("--draws", type=int, default=100)
    args = ap.parse_args()
    config = _config(args.num_models)
    workdir = Path(args.workdir)
    with tempfile.TemporaryDirectory() as tfds_dir:
        ds = load_dataset(config.data.name, data_dir=tfds_dir)
    model_def = get_model(config.model.name, num_classes=ds.num_classes,
                          input_shape=ds.x_train.shape[1:])
    t = time.perf_counter()
    collect_s = float("nan")
    if not (workdir / "zoo").exists():   # the collect stage, exactly as a run does it
        run_pipeline(config, workdir, stages=["collect"])
        collect_s = time.perf_counter() - t
    zoo = load_zoo(workdir / "zoo")
    evaluator = open_run(workdir).evaluator(zoo.base, zoo.spec, zoo.split_point)
    t = time.perf_counter()
    aligned = align_zoo(zoo.vectors, zoo.spec, model_def, method="weight_matching")
    align_s = time.perf_counter() - t
    aligned_acc, _ = evaluator.evaluate(aligned, "test")
    print(f"Machine: {machine_info()}; load {load()}\n")
    print(f"{config.model.name} seed zoo, K = {zoo.num_models}, D = {zoo.spec.size}; collect "
          f"{collect_s:.0f} s (nan = reused), weight matching {align_s:.1f} s; zoo test accuracy "
          f"mean {zoo.test_acc.mean():.2f} / median {np.median(zoo.test_acc):.2f} / best "
          f"{zoo.test_acc.max():.2f}; aligned members' accuracies differ by at most "
          f"{np.abs(aligned_acc - zoo.test_acc).max():.2f} points.\n")
    print("| zoo | mean L2 to member 0 | baseline | test acc mean | median | best |")
    print("|---|---|---|---|---|---|")
    key = jax.random.key(0)
    for name, vectors in (("unaligned", zoo.vectors), ("weight matching", aligned)):
        dist = np.linalg.norm(vectors[1:] - vectors[0], axis=1).mean()
        draws = baselines.make_baselines(key, vectors, n=args.draws,
                                         noise_amplitudes=(0.1,))
        draws["ensemble"] = baselines.ensemble(vectors)
        for base, v in draws.items():
            acc, _ = evaluator.evaluate(np.asarray(v), "test")
            print(f"| {name} | {dist:.2f} | {base} | {acc.mean():.2f} | {np.median(acc):.2f} | "
                  f"{acc.max():.2f} |", flush=True)


if __name__ == "__main__":
    main()
