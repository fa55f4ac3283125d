"""Why the FC autoencoder stage was slow on whole networks, and what the principal
coordinates change (issue 17).

Times one jitted AE training step (the library's ``ae_train_step``, batch 200, AdamW) of the
FC autoencoder (hidden 256, latent 4 x 4) on inputs of D = 40,785 numbers (MLP-3 as a
vector) and of 199 (its zoo's principal coordinates), and, for the large one, the parts:
the forward pass alone, and the AdamW update over its parameters alone.

    python benchmarks/bench_fc_autoencoder_step.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load, machine_info, median, timed_runs

from pdiff_jax.generator.autoencoder import FCAutoencoder
from pdiff_jax.generator.train import ae_train_step, init_generator_state
from pdiff_jax.runtime.optimizer import make_optimizer


def median_ms(fn, repeats):
    return 1000 * median(timed_runs(fn, repeats))


def time_one(dim: int, repeats: int) -> str:
    """One table row: the AE step, its forward pass and its AdamW update at input size dim."""
    model = FCAutoencoder(D=dim, hidden=(256,), latent_len=4, latent_channels=4,
                          latent_noise=0.05)
    data = jnp.asarray(np.random.default_rng(0).normal(size=(200, dim)), jnp.float32)
    variables = model.init(jax.random.key(0), data[:1])
    tx = make_optimizer(optimizer="adamw", lr=1e-2, b1=0.9, b2=0.999, weight_decay=2e-6)
    n_params = sum(p.size for p in jax.tree.leaves(variables["params"]))
    state = {"s": init_generator_state(variables, tx, ema=False)}
    step = functools.partial(ae_train_step, model=model, tx=tx, batch_size=200)

    def train_step():
        state["s"], loss = step(state["s"], data, jax.random.key(1))
        return loss

    params = jax.tree.map(jnp.array, state["s"]["params"])
    fwd = jax.jit(lambda p: model.apply({"params": p}, data)[0])
    grads = jax.tree.map(jnp.ones_like, params)
    opt_state = tx.init(params)
    update = jax.jit(lambda g, o, p: optax.apply_updates(p, tx.update(g, o, p)[0]))
    t_step = median_ms(train_step, repeats)
    t_fwd = median_ms(lambda: fwd(params), repeats)
    t_upd = median_ms(lambda: update(grads, opt_state, params), repeats)
    return f"| {dim:,} | {n_params:,} | {t_step:.1f} | {t_fwd:.1f} | {t_upd:.1f} |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    print(machine_info(), "| load", load())
    print("| input numbers | AE parameters | train step (ms) | forward (ms) | AdamW update (ms) |")
    print("|---|---|---|---|---|")
    for dim in (40_785, 199):
        print(time_one(dim, args.repeats), flush=True)
    print("load", load())


if __name__ == "__main__":
    main()
