"""Where does a conditional run lose the requested level: diffusion or autoencoder?

    python benchmarks/conditional_diagnostics.py --workdir runs/conditional

Prints, for a finished conditional run (configs/conditional.py):
1. the autoencoder's fidelity per level: median test accuracy of the zoo members of each
   level and of their reconstructions decode(encode(member)) (an AE that averages
   members of different levels erases the level before diffusion sees it);
2. the latent distances between the epoch checkpoints of one seed (seed-major zoos);
3. the diffusion's fidelity per level: for latents sampled with each level's condition
   (DDIM 50, guidance 1 and 3), the levels of their nearest zoo latents.
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--n", type=int, default=50)
    a = p.parse_args(argv)

    import pdiff_jax
    from pdiff_jax.generator import SamplerSettings

    run = pdiff_jax.load(a.workdir)
    gen, zoo = run.generator, run.zoo
    cond = gen.condition
    acc = zoo.test_acc if cond.on == "test" else zoo.train_acc
    level = cond.level_of(acc)
    recon = run.accuracy(gen.decode(gen.encode(zoo.vectors)))
    print(f"AE relative reconstruction error {gen.meta['rel_recon_error']:.4f}")
    for i in range(cond.num_levels):
        print(f"level {i}: zoo median {np.median(zoo.test_acc[level == i]):.2f}  "
              f"reconstructed median {np.median(recon[level == i]):.2f}")
    z = gen.encode(zoo.vectors).reshape(zoo.num_models, -1)
    epochs = len(run.run.config.zoo.snapshot_epochs) or 1
    if epochs > 1:
        zs = z.reshape(-1, epochs, z.shape[1])
        d = np.linalg.norm(zs[:, :, None] - zs[:, None], axis=-1)
        first_last = np.linalg.norm(zs[:, 0] - zs[:, -1], axis=-1).mean()
        print(f"latent distance within a seed {d.sum() / (len(zs) * epochs * (epochs - 1)):.3f}"
              f", first vs last checkpoint {first_last:.3f}"
              f", member to zoo centre {np.linalg.norm(z - z.mean(0), axis=1).mean():.3f}")
    settings = SamplerSettings("ddim", 50)
    for scale in (1.0, 3.0):
        for i in range(cond.num_levels):
            s = gen.sample_latents(jax.random.key(0), a.n, settings, condition=cond.request(i),
                                   guidance_scale=scale).reshape(a.n, -1)
            dist = np.linalg.norm(s[:, None] - z[None], axis=-1)
            counts = np.bincount(level[dist.argmin(1)] + 1, minlength=cond.num_levels + 1)
            print(f"guidance {scale:g}, level {i}: nearest members' levels "
                  f"(unlabelled, 0..{cond.num_levels - 1}) {counts.tolist()}, "
                  f"mean distance {dist.min(1).mean():.3f}")


if __name__ == "__main__":
    main()
