"""The p-diff generator: parameter autoencoder + latent DDPM.

    from pdiff_jax.generator import (default_generator_config, train_autoencoder,
                                     train_diffusion, TrainedGenerator)
    cfg = default_generator_config()
    ae_arrays, ae_meta = train_autoencoder(            # zoo f32[K, D]
        zoo, key=k_ae, normalization=cfg.normalization, model=cfg.autoencoder.model,
        train=cfg.autoencoder.train)
    diff_arrays, diff_meta = train_diffusion(
        ae_arrays["latents"], key=k_diff, process=cfg.diffusion.process,
        model=cfg.diffusion.model, train=cfg.diffusion.train)
    gen = TrainedGenerator(ae_arrays, ae_meta, diff_arrays, diff_meta)
    vectors = gen.sample(jax.random.key(0), 100)       # f32[100, D]
The pipeline (``pdiff_jax.pipeline``) wires these stages to the workdir;
``load_generator(workdir)`` rebuilds a trained one from its artifacts.
"""

from pdiff_jax.runtime.train_loop import TrainingDivergedError

from .config import default_generator_config
from .sampling import SamplerSettings
from .stages import train_autoencoder, train_diffusion
from .trained import TrainedGenerator, load_generator, zoo_fingerprint

__all__ = [
    "SamplerSettings",
    "TrainedGenerator",
    "TrainingDivergedError",
    "default_generator_config",
    "load_generator",
    "train_autoencoder",
    "train_diffusion",
    "zoo_fingerprint",
]
