"""Benchmark the generator: step times, peak memory, sampling time, default-schedule run.

    python benchmarks/bench_generator.py                       # everything, defaults
    python benchmarks/bench_generator.py --step-dims 2048 --repeats 20 --no-e2e --mem-dims ''

Prints markdown tables with machine information. Times are medians over
``--repeats`` runs after one warm-up (compilation excluded unless stated).
Step times and peak memory: each (D, batch) runs in a fresh subprocess that builds a
synthetic zoo of K = batch vectors, times the AE train step and the diffusion train
step (on the AE's latents), and reports its peak RSS (``ru_maxrss``, = VmHWM): the
memory of training both stages at that D, the zoo included. When a configuration
fails (e.g. out of memory) it is retried at ``--fallback-batch``.
``--mem-dims`` additionally runs the real ``train_autoencoder``/``train_diffusion``
functions for a few steps in a subprocess and reports their peak RSS.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, median, timed_runs

from pdiff_jax.generator import (
    SamplerSettings,
    TrainedGenerator,
    default_generator_config,
    registry,
    train_autoencoder,
    train_diffusion,
)
from pdiff_jax.generator import diffusion as dp
from pdiff_jax.generator.stages import plain
from pdiff_jax.generator.train import ae_train_step, diffusion_train_step, init_generator_state
from pdiff_jax.runtime.optimizer import make_optimizer


def build_autoencoder(D, cfg):
    return registry.build_autoencoder(D, **plain(cfg.autoencoder.model))


def build_denoiser(cfg):
    return registry.build_denoiser(num_timesteps=cfg.diffusion.process.num_timesteps,
                                   **plain(cfg.diffusion.model))


def train_generator(zoo, cfg, **ae_kw) -> TrainedGenerator:
    """Both stages, as the pipeline runs them, without a workdir."""
    ae, ae_meta = train_autoencoder(zoo, key=jax.random.key(0), normalization=cfg.normalization,
                                    model=cfg.autoencoder.model, train=cfg.autoencoder.train,
                                    **ae_kw)
    diff, diff_meta = train_diffusion(ae["latents"], key=jax.random.key(1),
                                      process=cfg.diffusion.process, model=cfg.diffusion.model,
                                      train=cfg.diffusion.train)
    return TrainedGenerator(ae, ae_meta, diff, diff_meta)


def synthetic_zoo(K: int, D: int, seed: int = 0, rank: int = 8) -> np.ndarray:
    """A structured zoo: a base vector plus low-rank variation plus small noise."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    base = rng.standard_normal((D,), dtype=f32)
    coef = rng.standard_normal((K, rank), dtype=f32)
    basis = rng.standard_normal((rank, D), dtype=f32) / f32(np.sqrt(rank))
    out = rng.standard_normal((K, D), dtype=f32)   # float32 throughout: no f64 temporaries
    out *= f32(0.001)
    out += base
    out += f32(0.05) * coef @ basis
    return out


def _median_time(fn, repeats: int) -> float:
    return median(timed_runs(fn, repeats))


def step_times(D: int, batch: int, repeats: int, cfg=None) -> dict:
    """Median AE and diffusion step times at (D, batch) for generator config ``cfg``."""
    cfg = cfg or default_generator_config()
    K = batch
    x = jnp.asarray(synthetic_zoo(K, D))
    tx = make_optimizer(optimizer="adamw", lr=1e-3, weight_decay=2e-6)
    ae = build_autoencoder(D, cfg)
    holder = {"s": init_generator_state(ae.init(jax.random.key(0), x[:1]), tx, ema=False)}
    step = functools.partial(ae_train_step, model=ae, tx=tx, batch_size=batch)

    def run_ae():
        holder["s"], loss = step(holder["s"], x, jax.random.key(1))
        loss.block_until_ready()

    t_ae = _median_time(run_ae, repeats)
    z = ae.apply({"params": holder["s"]["params"]}, x, method=ae.encode)
    den = build_denoiser(cfg)
    den_vars = den.init(jax.random.key(0), z[:1], jnp.zeros((1,), jnp.int32))
    dh = {"s": init_generator_state(den_vars, tx, ema=True)}
    dstep = functools.partial(diffusion_train_step, sched=dp.linear_schedule(), model=den,
                              tx=tx, batch_size=batch, ema_decay=0.9999)

    def run_diff():
        dh["s"], loss = dstep(dh["s"], z, jax.random.key(1))
        loss.block_until_ready()

    t_diff = _median_time(run_diff, repeats)
    n_ae = sum(p.size for p in jax.tree.leaves(holder["s"]["params"]))
    n_den = sum(p.size for p in jax.tree.leaves(dh["s"]["params"]))
    return {"D": D, "batch": batch, "ae_step_s": t_ae, "diff_step_s": t_diff,
            "latent": list(z.shape[1:]), "ae_params": n_ae, "denoiser_params": n_den}


def step_child(D: int, batch: int, repeats: int) -> None:
    """In a fresh process: step times at (D, batch) and this process's peak RSS."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    r = step_times(D, batch, repeats)
    r["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    r["rss_after_import_gb"] = rss0
    r["load"] = "/".join(f"{v:.1f}" for v in os.getloadavg())
    print(json.dumps(r))


def step_in_child(D: int, batch: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child-step", f"{D},{batch},{repeats}"],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        return {"D": D, "batch": batch, "error": f"exit {out.returncode}: "
                + (out.stderr or out.stdout)[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def untrained_generator(D: int, K: int = 8) -> TrainedGenerator:
    """A generator with initialized (untrained) weights: sampling cost does not depend on them."""
    cfg = default_generator_config()
    ae = build_autoencoder(D, cfg)
    ae_params = ae.init(jax.random.key(0), jnp.zeros((1, D)))["params"]
    latents = np.asarray(ae.apply({"params": ae_params}, jnp.asarray(synthetic_zoo(K, D)),
                                  method=ae.encode))
    den = build_denoiser(cfg)
    d_params = den.init(jax.random.key(1), latents[:1], jnp.zeros((1,), jnp.int32))["params"]
    meta = {"model": plain(cfg.autoencoder.model), "D": D, "K": K, "fingerprint": "bench"}
    arrays = {"params": ae_params, "latents": latents,
              "normalizer": {"mean": np.zeros(D, np.float32), "std": np.ones(D, np.float32)}}
    return TrainedGenerator(arrays, meta, {"params": d_params, "latent_scale": np.float32(1.0)},
                            {"model": plain(cfg.diffusion.model),
                             "process": plain(cfg.diffusion.process)})


def sampling_times(D: int, n: int, repeats: int) -> dict:
    gen = untrained_generator(D)
    out = {"D": D, "n": n}
    for name, settings in (("ddpm_1000", SamplerSettings("ddpm")),
                           ("ddim_50", SamplerSettings("ddim", 50))):
        t = time.perf_counter()
        gen.sample(jax.random.key(0), n, settings)
        out[name + "_first_s"] = time.perf_counter() - t
        keys = iter(range(1, repeats + 2))
        run = lambda st=settings, ks=keys: gen.sample(jax.random.key(next(ks)), n, st)
        out[name + "_s"] = _median_time(run, repeats)
    out["load"] = "/".join(f"{v:.1f}" for v in os.getloadavg())
    return out


def end_to_end(D: int, K: int) -> dict:
    """The DEFAULT schedule on a synthetic zoo, both stages, compilation included."""
    cfg = default_generator_config()
    zoo = synthetic_zoo(K, D)
    times = []
    t0 = time.perf_counter()
    gen = train_generator(zoo, cfg, metrics_fn=lambda s, r: times.append(time.perf_counter()))
    t1, t2 = times[-1], time.perf_counter()   # the AE's last log, then the diffusion's end
    samples = gen.sample(jax.random.key(2), 100)
    # How far samples are from the zoo, relative to the zoo's own spread.
    spread = np.linalg.norm(zoo - zoo.mean(0), axis=1).mean()
    d_nn = np.min(np.linalg.norm(samples[:, None] - zoo[None], axis=-1), axis=1)
    return {"D": D, "K": K, "ae_steps": cfg.autoencoder.train.steps,
            "diff_steps": cfg.diffusion.train.steps, "ae_s": t1 - t0, "diff_s": t2 - t1,
            "total_s": t2 - t0, "rel_recon_error": gen.meta["rel_recon_error"],
            "rel_recon_error_normalized": gen.meta["rel_recon_error_normalized"],
            "sample_nn_dist_over_spread": float(np.median(d_nn) / spread)}


def memory_child(D: int, batch: int, steps: int) -> None:
    cfg = default_generator_config()
    for stage in (cfg.autoencoder.train, cfg.diffusion.train):
        stage.update(steps=steps, batch_size=batch, log_every=1, checkpoint_every=10**9)
    zoo = synthetic_zoo(batch, D, rank=4)
    times = []
    t = time.perf_counter()
    gen = train_generator(zoo, cfg, metrics_fn=lambda s, r: times.append(time.perf_counter()))
    t_ae = times[-1] - t
    gen.sample(jax.random.key(0), 4, SamplerSettings("ddim", 10))
    step_s = float(np.median(np.diff(times[:steps]))) if steps > 2 else float("nan")
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"D": D, "batch": batch, "peak_rss_gb": rss_gb, "ae_total_s": t_ae,
                      "ae_step_s": step_s}))


def peak_memory(D: int, batch: int, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child-mem", f"{D},{batch},{steps}"],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        return {"D": D, "batch": batch, "error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--step-dims", default="2048,10000,70000,100000,1000000",
                    help="D values for step times and peak memory (one subprocess each)")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--fallback-batch", type=int, default=50,
                    help="batch to retry a (D, --batch) configuration with when it fails")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--sample-dims", default="2048", help="D values for sampling times")
    ap.add_argument("--sample-n", type=int, default=100)
    ap.add_argument("--e2e", action=argparse.BooleanOptionalAction, default=True,
                    help="train both stages with the default schedule at D=256, K=200")
    ap.add_argument("--mem-dims", default="", help="D values for peak memory of the real "
                    "train_autoencoder/train_diffusion functions (e.g. 100000,1000000)")
    ap.add_argument("--mem-batches", default="200,50", help="batch per --mem-dims entry")
    ap.add_argument("--mem-steps", type=int, default=5)
    ap.add_argument("--child-mem", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-step", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_mem:
        memory_child(*_ints(args.child_mem))
        return
    if args.child_step:
        step_child(*_ints(args.child_step))
        return

    print(f"Machine: {machine_info()}\n")
    print(f"Step times: median of {args.repeats} steps after a warm-up; peak RSS of a fresh "
          "process doing both.\n")
    print("| D | batch | AE step | diffusion step | AE + diffusion | peak RSS | target | "
          "AE / denoiser params, latent | load |\n|---|---|---|---|---|---|---|---|---|",
          flush=True)
    for D in _ints(args.step_dims):
        r = step_in_child(D, args.batch, args.repeats)
        if "error" in r and args.fallback_batch and args.fallback_batch < args.batch:
            print(f"| {D} | {args.batch} | failed | | | | | {r['error'][-150:]!r} | |")
            r = step_in_child(D, args.fallback_batch, args.repeats)
        if "error" in r:
            print(f"| {D} | {r['batch']} | failed | | | | | {r['error'][-150:]!r} | |")
            continue
        total = r["ae_step_s"] + r["diff_step_s"]
        target = ""
        if D == 2048 and r["batch"] == 200:
            target = f"<= 0.16 s: {'met' if total <= 0.16 else 'MISSED'}"
        elif D == 100_000 and r["batch"] == 200:
            target = f"<= 4 GB: {'met' if r['peak_rss_gb'] <= 4 else 'MISSED'}"
        elif D == 1_000_000:
            target = f"trains at batch >= 50: {'met' if r['batch'] >= 50 else 'MISSED'}"
        print(f"| {D:,} | {r['batch']} | {r['ae_step_s']:.3f} s | {r['diff_step_s']:.3f} s | "
              f"{total:.3f} s | {r['peak_rss_gb']:.2f} GB ({r['rss_after_import_gb']:.2f} after "
              f"imports) | {target} | {r['ae_params']:,} / "
              f"{r['denoiser_params']:,}, {r['latent']} | {r['load']} |", flush=True)
    print("\n| measurement | D | value | target | details |\n|---|---|---|---|---|", flush=True)
    for D in _ints(args.sample_dims):
        r = sampling_times(D, args.sample_n, args.repeats)
        t1, t2 = r["ddpm_1000_s"], r["ddim_50_s"]
        print(f"| sample {r['n']} sets, DDPM 1000 steps | {D} | {t1:.2f} s | <= 4 s: "
              f"{'met' if t1 <= 4 else 'MISSED'} | first call incl. compile "
              f"{r['ddpm_1000_first_s']:.1f} s; load {r['load']} |")
        print(f"| sample {r['n']} sets, DDIM 50 steps | {D} | {t2:.2f} s | <= 1 s: "
              f"{'met' if t2 <= 1 else 'MISSED'} | first call incl. compile "
              f"{r['ddim_50_first_s']:.1f} s; load {r['load']} |", flush=True)
    if args.e2e:
        r = end_to_end(256, 200)
        print(f"| default schedule, both stages (K {r['K']}) | {r['D']} | {r['total_s']:.0f} s | | "
              f"AE {r['ae_steps']} steps {r['ae_s']:.0f} s, diffusion {r['diff_steps']} steps "
              f"{r['diff_s']:.0f} s (compile included); relative reconstruction error "
              f"{r['rel_recon_error']:.2e} (raw), {r['rel_recon_error_normalized']:.3f} "
              "(normalized); median sample-to-nearest-zoo distance / zoo spread "
              f"{r['sample_nn_dist_over_spread']:.3f} |", flush=True)
    for D, b in zip(_ints(args.mem_dims), _ints(args.mem_batches), strict=False):
        r = peak_memory(D, b, args.mem_steps)
        if "error" in r:
            print(f"| peak RSS, training (batch {b}) | {D} | failed | | {r['error']!r} |")
        else:
            print(f"| peak RSS, training (batch {b}) | {D} | {r['peak_rss_gb']:.2f} GB | | "
                  f"AE step {r['ae_step_s']:.2f} s; {args.mem_steps} AE + "
                  f"{args.mem_steps} diffusion steps, encode, sample |", flush=True)


if __name__ == "__main__":
    main()
