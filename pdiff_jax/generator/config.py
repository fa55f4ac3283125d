"""Default generator configuration. Each section holds the keyword arguments of one
function or module:

  normalization        -> normalize.fit_normalizer(vectors, segments, **.)
  autoencoder.model    -> autoencoder.build(D=..., **.): kind 'conv' -> ParamAutoencoder,
                          'fc' -> FCAutoencoder (each takes its own keys, ignores the other's),
                          'paper' -> the authors' AE (paper_modules.py; configs/paper.py),
                          'vae' -> VariationalAutoencoder (vae.py), 'identity' -> no AE
                          (identity_ae.py: diffusion on the parameters)
  autoencoder.train    -> train.TrainSettings(**.)   (optimizer, steps, batch, EMA, logging)
  diffusion.process    -> diffusion.linear_schedule(**.)
  diffusion.model      -> denoiser.build(**.): kind 'unet' -> UNet1D, 'paper' -> the
                          authors' AE_CNN_bottleneck (paper_modules.py; configs/paper.py);
                          'gaussian' | 'kde' -> a latent density, no diffusion (latent_fit.py)
  diffusion.train      -> train.TrainSettings(**.)
  sampling             -> sampling.SamplerSettings(**.)  (the only sampler settings)

The default schedule is short so that a small subset (D = 256, K = 200) trains
in under two minutes on a 2-core CPU; the paper used 30,000 steps per stage
(override ``autoencoder.train.steps`` / ``diffusion.train.steps``).
"""

from __future__ import annotations

import ml_collections


def _train(steps: int, ema_decay: float) -> dict:
    return dict(
        steps=steps,
        batch_size=200,  # capped at K (and rounded to the device count)
        learning_rate=1e-3,
        b1=0.9,
        b2=0.999,
        weight_decay=2e-6,
        # EMA decay warmed up as min(ema_decay, (1 + step) / (10 + step)); 0 switches EMA off.
        ema_decay=ema_decay,
        log_every=50,
        checkpoint_every=500,
    )


def default_generator_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.normalization = dict(mode="coordinate", std_floor=1e-4, abs_floor=1e-8)
    cfg.autoencoder = dict(
        model=dict(
            # conv: folded 1D-CNN (subsets: snapshots of one model); fc: dense layers with a
            # per-coordinate output (entire-network zoos of independently trained members).
            kind="conv",
            fold=32,  # conv only: numbers per position for mid-size D
            min_len=32,  # folded length bounds; the fold grows with D beyond max_len
            max_len=512,
            channels=(32, 32, 64, 64),
            latent_channels=4,  # both kinds
            latent_bound=1.0,  # latents = bound * tanh(.)
            norm="instance",  # instance | group | batch | none
            kernel_size=3,
            hidden=(512, 256),  # fc only: encoder widths (the decoder mirrors them)
            latent_len=16,  # fc only: latent f32[latent_len, latent_channels]
            input_noise=1e-3,  # std, in normalized units; 0 = off
            latent_noise=0.1,  # std; 0 = off (ignored by 'vae', which samples its own)
            size="medium",  # paper only: their 'medium' or 'small' autoencoder
            kl_weight=1e-3,  # vae only: weight of KL(q(z|x) || N(0, I)), per latent number
        ),
        train=_train(steps=2000, ema_decay=0.0),
    )
    cfg.diffusion = dict(
        process=dict(num_timesteps=1000, beta_start=1e-4, beta_end=2e-2),
        # kind 'gaussian' | 'kde': no denoiser; a density fitted to the latents (latent_fit.py)
        model=dict(kind="unet", channels=(32, 32), time_dim=64, kernel_size=3,
                   bandwidth=0.0),  # kde only: kernel std / latent std (0: Scott's rule)
        train=_train(steps=4000, ema_decay=0.9999),
    )
    cfg.sampling = dict(sampler="ddpm", steps=0, eta=0.0, clip_denoised=True)
    return cfg
