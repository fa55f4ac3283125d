"""Default generator configuration. Each section holds the keyword arguments of one
function or module:

  normalization        -> normalize.fit_normalizer(vectors, segments, **.)
  autoencoder.model    -> registry.build_autoencoder(D=..., **.): kind 'conv' -> ParamAutoencoder,
                          'fc' -> FCAutoencoder (each takes its own keys, ignores the other's),
                          'paper' -> the authors' AE (paper_modules.py; configs/paper.py),
                          'vae' -> VariationalAutoencoder (vae.py), 'identity' -> no AE
                          (identity_ae.py: diffusion on the parameters)
  autoencoder.train    -> train.TrainSettings(**.)   (optimizer, steps, batch, EMA, logging)
  autoencoder.behaviour -> behaviour.BehaviourSettings(**.): decoded networks must act
                          like their members (a KL term on their logits; weight 0 = off)
  diffusion.process    -> diffusion.linear_schedule(**.)
  diffusion.model      -> registry.build_denoiser(**.): kind 'unet' -> UNet1D, 'paper' ->
                          the authors' AE_CNN_bottleneck (paper_modules.py; configs/paper.py);
                          or registry.build_latent_fit(**.): 'gaussian' | 'kde' -> a latent
                          density, no diffusion (latent_fit.py)
  diffusion.train      -> train.TrainSettings(**.)
  sampling             -> sampling.SamplerSettings(**.)  (the only sampler settings)
  condition            -> conditioning.ConditionSettings(**.): accuracy-conditioned
                          generation with classifier-free guidance (kind 'none' = off)

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
        steps_per_dispatch=0,  # optimizer steps per device call; 0 = 1 on CPU, 100 on GPU/TPU
    )


def default_generator_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    # components > 0: the AE sees the zoo's top principal coordinates, not D numbers; basis
    # 'dense' keeps them as f32[n, D] rows, 'implicit' as f32[n, K] coefficients over the
    # zoo (no K x D copy beside the zoo; normalize.py, implicit_basis.py).
    cfg.normalization = dict(mode="coordinate", std_floor=1e-4, abs_floor=1e-8, components=0,
                             basis="dense")
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
            latent_mix=0.0,  # fc only: train on latent mixes of two members (0 = off)
            size="medium",  # paper only: their 'medium' or 'small' autoencoder
            kl_weight=1e-3,  # vae only: weight of KL(q(z|x) || N(0, I)), per latent number
        ),
        train=_train(steps=2000, ema_decay=0.0),
        # weight > 0: decoded networks must also match their members' logits on `images`
        # training images, `members` rows of each batch (behaviour.py; 0 = off); mix > 0:
        # latent mixes of two members (weight a ~ U(0, mix)) match the pair's ensemble;
        # target 'labels': the images' labels instead of the members' predictions;
        # images_per_step > 0: each step runs that many of the `images`, drawn anew;
        # vectorize 'loop': decoded networks one after another (convnets on a CPU);
        # warmup: fraction of the steps on reconstruction alone, then the weight rises
        # linearly over a `ramp` fraction of them; learning_rate > 0: the autoencoder's
        # rate from the warm-up's end on (0: unchanged).
        behaviour=dict(weight=0.0, images=128, members=32, mix=0.0, target="members",
                       images_per_step=0, vectorize="vmap", warmup=0.0, ramp=0.0,
                       learning_rate=0.0),
    )
    cfg.diffusion = dict(
        process=dict(num_timesteps=1000, beta_start=1e-4, beta_end=2e-2),
        # kind 'gaussian' | 'kde': no denoiser; a density fitted to the latents (latent_fit.py)
        model=dict(kind="unet", channels=(32, 32), time_dim=64, kernel_size=3,
                   bandwidth=0.0),  # kde only: kernel std / latent std (0: Scott's rule)
        train=_train(steps=4000, ema_decay=0.9999),
        # > 0: the denoiser trains on mixes (1 - a) z_i + a z_j of two members' latents,
        # a ~ U(0, latent_mix), so samples also land between members (mixing.py).
        latent_mix=0.0,
    )
    cfg.sampling = dict(sampler="ddpm", steps=0, eta=0.0, clip_denoised=True, temperature=1.0,
                        latent_mix=0.0)   # a > 0: decode (1 - a) z_1 + a z_2 (sampling.py)
    cfg.condition = dict(
        kind="none",          # none | level (index of an accuracy range) | value (accuracy)
        levels=(),            # range edges in percent, e.g. (75, 85, 90, 92, 95): 4 levels
        on="test",            # which zoo accuracy labels a member: test | train
        dropout=0.1,          # fraction of conditions replaced by null while training
        guidance_scale=1.0,   # eps(null) + s (eps(c) - eps(null)); 0 = unconditional
    )
    return cfg
