"""Side by side on this CPU: one epoch of the default config's base training with this
checkout against another checkout (e.g. the revision before the throughput layer).

    python benchmarks/bench_cpu_dispatch.py --other /path/to/old/checkout --repeats 3

Each measurement is a fresh process (so neither revision inherits the other's
compiled code) that trains ``cnn_bn`` on 6,400 bundled MNIST images for two epochs
and reports the second epoch's seconds; revisions alternate, and the table gives the
median per revision and the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load, machine_info, median

CHILD = """
import json, sys, time, jax
sys.path.insert(0, sys.argv[1])
from pdiff_jax.zoo import training
from pdiff_jax.data import load_dataset
from pdiff_jax.models import get_model
ds = load_dataset("mnist", max_train=6400, max_test=10)
m = get_model("cnn_bn", num_classes=10, input_shape=ds.image_shape)
v = jax.device_get(m.init(jax.random.key(0)))
times = [time.perf_counter()]
training.train_classifier(m, v, ds.x_train, ds.y_train, epochs=2, batch_size=128, seed=0,
                          optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                          schedule="cosine",
                          metrics_fn=lambda d, r: times.append(time.perf_counter()))
print(json.dumps({"epoch_s": times[2] - times[1]}))
"""


def one(checkout: Path) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(checkout)], capture_output=True,
                         text=True, check=True, cwd=checkout)
    return json.loads(out.stdout.strip().splitlines()[-1])["epoch_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--other", required=True, help="the checkout to compare with")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    runs = {"this checkout": [], "other": []}
    for _ in range(args.repeats):
        runs["this checkout"].append(one(here))
        runs["other"].append(one(Path(args.other).resolve()))
    print(f"Machine: {machine_info()}; load at the end {load()}\n")
    print("| revision | second epoch, 50 steps of 128 (median) | runs |\n|---|---|---|")
    for name, ts in runs.items():
        print(f"| {name} | {median(ts):.2f} s | {', '.join(f'{t:.2f}' for t in ts)} |")
    ratio = median(runs["this checkout"]) / median(runs["other"])
    print(f"\nthis / other = {ratio:.3f}")


if __name__ == "__main__":
    main()
