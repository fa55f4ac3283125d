"""The one-shot device benchmark: generator steps, real training loops, sampling, and the
ResNet-18 recipe end to end, written as one markdown table.

    bash benchmarks/gpu.sh [--cpu-smoke] [--out DIR] [--budget SECONDS]

(``gpu.sh`` installs carried wheels where the device image lacks them, then runs this.)
The end-to-end recipe runs first (it is the target), capped at ``--e2e-budget``; the
other sections follow while ``--budget`` (default 450 s) lasts, so a slow device still
returns a table with what it finished. ``--cpu-smoke`` runs the
same code at toy sizes on a CPU in under two minutes (tests/test_bench_gpu.py).

Rows:
  * AE / diffusion train step at D = 2,048 ... 10,000,000, batch 200: median ms over
    ``--repeats`` steps after a compiling call; device memory peak after the row
    (``peak_bytes_in_use``; D grows, so the running peak is that row's);
  * the real training loops (``train_autoencoder`` / ``train_diffusion``) at D = 2,048,
    batch 200: steps per second after the first (compiling) log window, with the
    backend's steps per dispatch and with one step per call;
  * sampling 100 parameter sets at D = 2,048: DDPM-1000 and DDIM-50;
  * ResNet-18 base training: ms per step, host pipeline vs device-resident data, f32
    vs bf16 (one epoch each, compile excluded);
  * ``configs/resnet18.py:mnist`` end to end (30 epochs, K = 200, 30k + 30k steps,
    selection on the whole training set) with per-stage seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import machine_info, median  # noqa: E402
from bench_generator import step_times, synthetic_zoo, untrained_generator  # noqa: E402

from pdiff_jax import pipeline  # noqa: E402
from pdiff_jax.generator import (  # noqa: E402
    SamplerSettings,
    default_generator_config,
    train_autoencoder,
    train_diffusion,
)
from pdiff_jax.runtime import dispatch  # noqa: E402
from pdiff_jax.zoo import training  # noqa: E402

BUNDLED_NPZ = REPO / "pdiff_jax" / "data" / "bundled" / "mnist.npz"
FULL = dict(dims=(2048, 100_000, 1_000_000, 10_000_000), batch=200, repeats=10,
            loop_steps=3000, sample_n=100, classifier_steps=300,
            e2e_config="configs/resnet18.py:mnist", e2e_overrides=())
SMOKE = dict(dims=(2048,), batch=16, repeats=3, loop_steps=40, sample_n=8,
             classifier_steps=2, e2e_config="configs/resnet18.py:smoke",
             e2e_overrides=("--config.zoo.num_models=8", "--config.evaluate.finetune_pairs=0",
                            "--config.evaluate.num_generated=4",
                            "--config.evaluate.num_baseline=4",
                            # the toy run checks the device path, not the frontier's numbers
                            "--config.evaluate.frontier.enabled=False"))


class Table:
    """Markdown rows, rewritten to ``path`` after each one (a killed run keeps its rows)."""

    def __init__(self, path: Path, header: str):
        self.path, self.lines = path, [header, "",
                                       "| measurement | value | notes |", "|---|---|---|"]
        self.flush()

    def row(self, what: str, value: str, notes: str = "") -> None:
        self.lines.append(f"| {what} | {value} | {notes} |")
        print(self.lines[-1], flush=True)
        self.flush()

    def flush(self) -> None:
        self.path.write_text("\n".join(self.lines) + "\n")


def device_peak_gb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 1e9


def generator_steps(table: Table, p: dict, deadline: float) -> None:
    for D in p["dims"]:
        if time.time() > deadline:
            table.row(f"AE + diffusion step, D = {D:,}", "skipped", "time budget spent")
            continue
        try:
            r = step_times(D, p["batch"], p["repeats"])
        except Exception as e:   # e.g. out of memory at the largest D: keep the other rows
            table.row(f"AE + diffusion step, D = {D:,}", "failed", type(e).__name__)
            continue
        peak = device_peak_gb()
        table.row(f"AE + diffusion step, D = {D:,}, batch {p['batch']}",
                  f"{1e3 * r['ae_step_s']:.2f} + {1e3 * r['diff_step_s']:.2f} ms",
                  f"latent {r['latent']}; device peak "
                  + (f"{peak:.1f} GB" if peak is not None else "n/a (CPU)"))


def training_loops(table: Table, p: dict, deadline: float) -> None:
    zoo = synthetic_zoo(p["batch"], 2048)
    auto = dispatch.steps_per_dispatch(0)
    for k in sorted({auto, 1}, reverse=True):
        if time.time() > deadline:
            table.row(f"real loops, {k} step(s) per call", "skipped", "time budget spent")
            continue
        cfg = default_generator_config()
        rates = {}
        for section in (cfg.autoencoder.train, cfg.diffusion.train):
            section.update(steps=p["loop_steps"], log_every=max(p["loop_steps"] // 10, k),
                           checkpoint_every=10**9, steps_per_dispatch=k,
                           batch_size=p["batch"])
        records = {"autoencoder": [], "diffusion": []}

        def log(done, rec, records=records):
            if "steps_per_s" in rec:
                records[rec["stage"]].append(rec["steps_per_s"])

        arrays, _ = train_autoencoder(zoo, key=jax.random.key(0),
                                      normalization=cfg.normalization,
                                      model=cfg.autoencoder.model, train=cfg.autoencoder.train,
                                      metrics_fn=log)
        train_diffusion(arrays["latents"], key=jax.random.key(1), process=cfg.diffusion.process,
                        model=cfg.diffusion.model, train=cfg.diffusion.train, metrics_fn=log)
        for stage, r in records.items():   # the first window holds the compile
            rates[stage] = median(r[1:]) if len(r) > 1 else float("nan")
        table.row(f"real training loop, D = 2,048, batch {p['batch']}, {k} step(s) per call",
                  f"{rates['autoencoder']:.0f} AE / {rates['diffusion']:.0f} diffusion steps/s",
                  f"{p['loop_steps']} steps each; median of the log windows after the first"
                  " (which compiles)")


def sampling(table: Table, p: dict, deadline: float) -> None:
    if time.time() > deadline:
        table.row("sampling", "skipped", "time budget spent")
        return
    gen = untrained_generator(2048)
    for name, settings in (("DDPM-1000", SamplerSettings("ddpm")),
                           ("DDIM-50", SamplerSettings("ddim", 50))):
        gen.sample(jax.random.key(0), p["sample_n"], settings)   # compile
        times = []
        for i in range(3):
            t = time.perf_counter()
            gen.sample(jax.random.key(i + 1), p["sample_n"], settings)
            times.append(time.perf_counter() - t)
        table.row(f"sample {p['sample_n']} sets, D = 2,048, {name}", f"{median(times):.3f} s",
                  "median of 3 after a compiling call")


def classifier_steps(table: Table, p: dict, deadline: float) -> None:
    """ms per ResNet-18 step: the host pipeline against device-resident data (and bf16)."""
    from pdiff_jax.data import load_dataset
    from pdiff_jax.models import get_model

    n = p["classifier_steps"] * 128
    ds = load_dataset(str(BUNDLED_NPZ), image_size=32, channels=3, max_train=n, max_test=10)
    width = {} if p is FULL else {"width": 8}
    model_def = get_model("resnet18", num_classes=10, input_shape=ds.image_shape,
                          stem="cifar", **width)
    variables = jax.device_get(model_def.init(jax.random.key(0)))
    variants = [("host pipeline, f32", dict(data_placement="host")),
                ("device-resident, f32", dict(data_placement="device")),
                ("device-resident, bf16", dict(data_placement="device", precision="bf16"))]
    for name, kw in variants:
        if time.time() > deadline:
            table.row(f"ResNet-18 step ({name})", "skipped", "time budget spent")
            continue
        epoch_s = []
        recipe = dict(epochs=2, batch_size=128, seed=0, optimizer="sgd", lr=0.1,
                      momentum=0.9, weight_decay=5e-4, augment="crop_flip",
                      data_stats=(ds.mean, ds.std), steps_per_dispatch=0, **kw)
        t0 = [time.perf_counter()]

        def log(done, rec, t0=t0, epoch_s=epoch_s):
            now = time.perf_counter()
            epoch_s.append(now - t0[0])
            t0[0] = now

        training.train_classifier(model_def, variables, ds.x_train, ds.y_train,
                                  metrics_fn=log, **recipe)
        steps = len(ds.x_train) // 128
        table.row(f"ResNet-18 train step, batch 128, 32x32x3 ({name})",
                  f"{1e3 * epoch_s[-1] / steps:.2f} ms",
                  f"second epoch of {steps} steps (the first compiles); device-resident: "
                  f"{dispatch.steps_per_dispatch(0)} step(s) per call")


def end_to_end(table: Table, p: dict, deadline: float, keep: Path | None) -> None:
    left = deadline - time.time()
    if left < 30:
        table.row("ResNet-18 recipe end to end", "skipped", "time budget spent")
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = keep or Path(tmp) / "run"
        cmd = [sys.executable, "-m", "pdiff_jax.main", f"--config={p['e2e_config']}",
               f"--workdir={workdir}", f"--config.data.name={BUNDLED_NPZ}",
               "--config.evaluate.tsne=False", *p["e2e_overrides"]]
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=left,
                                  env=dict(os.environ, TQDM_DISABLE="1"))
            status = "finished" if proc.returncode == 0 else f"exit {proc.returncode}"
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
        except subprocess.TimeoutExpired:
            status = f"stopped at the time budget ({left:.0f} s)"
        wall = time.perf_counter() - t
        stages = pipeline.stage_seconds(workdir) if workdir.exists() else {}
        detail = ", ".join(f"{k} {v:.0f}" for k, v in stages.items())
        table.row(f"`{p['e2e_config']}` end to end", f"{wall:.0f} s ({status})",
                  f"stage seconds: {detail or 'none finished'}; command: "
                  + " ".join(c.replace(str(REPO) + "/", "") for c in cmd[1:]))
        results = workdir / "results.json"
        if results.exists():
            res = json.loads(results.read_text())
            table.row("ResNet-18 recipe quality (test accuracy %)",
                      f"originals best {res['original']['best']:.2f} / median "
                      f"{res['original']['median']:.2f}; p-diff best {res['pdiff']['best']:.2f}"
                      f" / median {res['pdiff']['median']:.2f}", "from results.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="toy sizes, for a CPU")
    ap.add_argument("--out", default="benchmarks/out", help="directory of gpu.md")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all sections")
    ap.add_argument("--keep-workdir", default=None, help="keep the end-to-end run here")
    ap.add_argument("--e2e-budget", type=float, default=330.0,
                    help="seconds the end-to-end run may take")
    ap.add_argument("--sections", default="e2e,loops,steps,sampling,classifier",
                    help="comma-separated subset, run in this order")
    args = ap.parse_args()
    p = SMOKE if args.cpu_smoke else FULL
    start = time.time()
    deadline = start + args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    table = Table(out / "gpu.md", f"Device: {device.device_kind} ({device.platform}, "
                  f"{jax.device_count()} device(s)); host: {machine_info()}; "
                  f"{'CPU SMOKE (toy sizes)' if args.cpu_smoke else 'full sizes'}")
    sections = {"steps": lambda: generator_steps(table, p, deadline),
                "loops": lambda: training_loops(table, p, deadline),
                "sampling": lambda: sampling(table, p, deadline),
                "e2e": lambda: end_to_end(table, p, min(deadline, start + args.e2e_budget),
                                          Path(args.keep_workdir) if args.keep_workdir else None),
                "classifier": lambda: classifier_steps(table, p, deadline)}
    for name in args.sections.split(","):
        t = time.time()
        try:
            sections[name]()
        except Exception as e:   # one broken section must not lose the others' rows
            table.row(f"section {name}", "failed", f"{type(e).__name__}: {str(e)[:200]}")
        print(f"[{name}: {time.time() - t:.0f} s]", file=sys.stderr, flush=True)
    table.row("whole script", f"{time.time() - start:.0f} s", f"budget {args.budget:.0f} s")


if __name__ == "__main__":
    jnp.zeros(())   # start the backend before the first timer
    main()
