"""The p-diff generator: parameter autoencoder + latent DDPM.

    from pdiff_jax.generator import (default_generator_config, train_autoencoder,
                                     train_diffusion, load_generator)
    cfg = default_generator_config()
    train_autoencoder(zoo, config=cfg, workdir=wd, key=k_ae)   # zoo f32[K, D]
    train_diffusion(config=cfg, workdir=wd, key=k_diff)
    gen = load_generator(wd)
    vectors = gen.sample(jax.random.key(0), 100)              # f32[100, D]
"""

from .config import default_generator_config
from .generator import Generator, load_generator, zoo_fingerprint
from .stages import train_autoencoder, train_diffusion
from .train import TrainingDivergedError

__all__ = [
    "Generator",
    "TrainingDivergedError",
    "default_generator_config",
    "load_generator",
    "train_autoencoder",
    "train_diffusion",
    "zoo_fingerprint",
]
