"""Where in latent space are the good networks? (issue 17)

On a workdir with a trained autoencoder and diffusion model, measures the test accuracy
of networks decoded from: the zoo's own latents; each member's latent plus Gaussian noise
of std s; midpoints of two members' latents; and diffusion samples under several sampler
settings, with each sample's distance to its nearest zoo latent.

    python benchmarks/exp_latent_probe.py --workdir /tmp/ent/g1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load

from pdiff_jax.generator import SamplerSettings, load_generator
from pdiff_jax.run import open_run


def stats(name, acc, extra=""):
    acc = np.asarray(acc)
    print(f"{name:<34} mean {acc.mean():6.2f} median {np.median(acc):6.2f} "
          f"min {acc.min():6.2f} >=94: {np.mean(acc >= 94) * 100:5.1f}% {extra}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--samplers", nargs="*", default=["ddpm:0", "ddim:100", "ddim:50"])
    args = ap.parse_args()
    inp = open_run(args.workdir)
    zoo, gen = inp.zoo, load_generator(args.workdir)
    ev = inp.evaluator(zoo.base, zoo.spec, zoo.split_point)
    acc = lambda v: ev.evaluate(np.asarray(v, np.float32), "test")[0]
    z = gen.zoo_latents
    flat = z.reshape(len(z), -1)
    print(f"latents {z.shape}: |z| > 0.9 for {np.mean(np.abs(flat) > 0.9) * 100:.1f}% of "
          f"entries; per-dim std {np.round(flat.std(0), 2)}; load {load()}")
    stats("zoo", zoo.test_acc)
    stats("zoo through the AE", acc(gen.decode(z)))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(z), 100)
    for s in (0.05, 0.1, 0.2, 0.4):
        noisy = z[idx] + s * rng.normal(size=z[idx].shape).astype(np.float32)
        stats(f"member latent + N(0, {s}^2)", acc(gen.decode(noisy)))
    j = rng.integers(0, len(z), 100)
    stats("midpoint of two members", acc(gen.decode(0.5 * (z[idx] + z[j]))))
    for spec in args.samplers:
        sampler, steps = spec.split(":")
        lat = gen.sample_latents(jax.random.key(3), 100, SamplerSettings(sampler, int(steps)))
        d = np.sqrt(((lat.reshape(100, 1, -1) - flat[None]) ** 2).sum(-1)).min(1)
        a = acc(gen.decode(lat))
        nn_zoo = np.sqrt(((flat[:, None] - flat[None]) ** 2).sum(-1) + np.eye(len(flat)) * 1e9
                         ).min(1)
        corr = np.corrcoef(d, a)[0, 1]
        stats(f"diffusion {spec}", a, f"| latent NN dist median {np.median(d):.3f} (zoo NN "
              f"{np.median(nn_zoo):.3f}), corr(dist, acc) {corr:.2f}")


if __name__ == "__main__":
    main()
