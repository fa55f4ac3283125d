"""Does the behavioural term stay small when a trained autoencoder starts to follow it?

    python benchmarks/behaviour_stability.py --workdir RUN --lr 1e-3 1e-4 --steps 300

From RUN's trained (plain) autoencoder: the term after one step of ``-lr * sign(grad)``
along its own gradient (the shape of Adam's first steps), then ``--steps`` AdamW steps on
the reconstruction plus the label term (8 rows x 32 of 8,192 images a step, mix 0.5: the
settings of results/frontier-mnist.md, session 5), once with the decoded networks'
running BatchNorm statistics and once with their batch statistics. Prints the mean
reconstruction loss and term of every 50 steps. On a ConvNet-3 run (session 5) the term
went from 0.17 to 0.8 (lr 1e-3) and 31 (lr 1e-4) with running statistics and stayed at
0.11 to 0.14 with batch statistics, which is why an entire BatchNorm network runs in the
term with the latter.
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdiff_jax.generator.autoencoder import reconstruction_loss
from pdiff_jax.generator.behaviour import Behaviour, BehaviourSettings, behaviour_targets
from pdiff_jax.generator.normalize import normalize
from pdiff_jax.generator.train import behaviour_term
from pdiff_jax.generator.trained import load_generator
from pdiff_jax.run import open_run

SETTINGS = BehaviourSettings(weight=1.0, images=8192, members=8, mix=0.5, target="labels",
                             images_per_step=32, vectorize="loop")


def term_data(run, generator, behaviour) -> dict:
    """What the autoencoder's training step hands the term (stages.train_autoencoder)."""
    zoo = run.zoo
    n = min(SETTINGS.images, len(run.dataset.x_train))
    images, labels = run.dataset.x_train[:n], run.dataset.y_train[:n]
    return {"x": jnp.asarray(normalize(generator.normalizer, zoo.vectors), jnp.float32),
            "teacher": jnp.asarray(behaviour_targets(behaviour, zoo.base, zoo.vectors, images,
                                                     labels)),
            "base": zoo.base, "inputs": jnp.asarray(images), "normalizer": generator.normalizer}


def sign_steps(generator, behaviour, data, lrs, keys: int = 2):
    """``[(lr, [term after one step of -lr * sign(gradient)] per key)]``: the shape of
    Adam's first steps along the term alone, from the trained autoencoder."""
    ae, idx = generator.ae, jnp.arange(SETTINGS.members)

    @jax.jit   # data as an argument: closed over, XLA constant-folds the 8,192 targets
    def term(params, data, key):
        x = data["x"][idx]
        return behaviour_term(ae, {"params": params}, x, idx, data, behaviour, key)

    params = generator.ae_variables["params"]
    grads = jax.grad(term)(params, data, jax.random.key(0))
    rows = [(0.0, [float(term(params, data, jax.random.key(k))) for k in range(keys)])]
    for lr in lrs:
        moved = jax.tree.map(lambda p, g, lr=lr: p - lr * jnp.sign(g), params, grads)
        rows.append((lr, [float(term(moved, data, jax.random.key(k))) for k in range(keys)]))
    return rows


def follow_the_term(generator, behaviour, data, lr: float, steps: int, batch: int,
                    report_every: int = 50):
    """``[(step, reconstruction, term)]``: means over each ``report_every`` steps of
    ``batch`` rows (the run's autoencoder batch)."""
    ae, tx = generator.ae, optax.adamw(lr, weight_decay=2e-6)

    def losses(params, data, key):
        xn = data["x"]
        k_rows, k_noise, k_term = jax.random.split(key, 3)
        idx = jax.random.permutation(k_rows, xn.shape[0])[:batch]
        recon, _ = ae.apply({"params": params}, xn[idx], train=True, rngs={"noise": k_noise})
        rec = reconstruction_loss(recon, xn[idx])
        term = behaviour_term(ae, {"params": params}, xn[idx], idx, data, behaviour, k_term)
        return rec + term, (rec, term)

    @jax.jit
    def step(params, opt_state, data, key):
        (_, parts), grads = jax.value_and_grad(losses, has_aux=True)(params, data, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, parts

    params = generator.ae_variables["params"]
    opt_state, history, rows = tx.init(params), [], []
    for s in range(steps):
        params, opt_state, parts = step(params, opt_state, data, jax.random.key(s))
        history.append([float(p) for p in parts])
        if (s + 1) % report_every == 0:
            rows.append((s + 1, *np.mean(history[-report_every:], axis=0)))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a run with a trained autoencoder")
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--sign-steps", type=float, nargs="*", default=[1e-2, 3e-3, 1e-3])
    args = parser.parse_args(argv)
    run = open_run(args.workdir)
    zoo, batch = run.zoo, run.config.generator.autoencoder.train.batch_size
    generator = load_generator(args.workdir, require_diffusion=False, zoo=zoo.vectors)
    base = Behaviour(run.model_def, zoo.spec, zoo.split_point, SETTINGS, steps=args.steps)
    for batch_statistics in (False, True):
        behaviour = dataclasses.replace(base, batch_statistics=batch_statistics)
        stats = "batch" if batch_statistics else "running"
        data = term_data(run, generator, behaviour)
        for lr, terms in sign_steps(generator, behaviour, data, args.sign_steps):
            print(f"{stats} statistics, one sign step of {lr:g}: term "
                  f"{', '.join(f'{t:.3g}' for t in terms)}", flush=True)
        for lr in args.lr:
            for step, rec, term in follow_the_term(generator, behaviour, data, lr, args.steps,
                                                   batch):
                print(f"{stats} statistics, lr {lr:g}, step {step}: reconstruction "
                      f"{rec:.4f}, term {term:.3f}", flush=True)


if __name__ == "__main__":
    main()
