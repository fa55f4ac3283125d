"""How latents are sampled: the one definition of the sampler settings.

The config section ``generator.sampling`` holds exactly these fields; the
sample stage, ``TrainedGenerator.sample`` and ``pdiff_jax.sample`` all take a
``SamplerSettings``.
"""

from __future__ import annotations

import dataclasses

from pdiff_jax.config.choices import SAMPLERS

DDIM_DEFAULT_STEPS = 50   # the DDIM paper's usual budget; ~20x faster than 1000 DDPM steps


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """``sampler``: 'ddpm' (all T steps) or 'ddim'; ``steps``: DDIM steps (0: the default
    of 50; DDPM accepts only 0 or T); ``eta``: DDIM stochasticity (0 = deterministic);
    ``clip_denoised``: clip the predicted clean latent to the AE's latent bound;
    ``temperature``: the scale of every noise draw (the starting noise and each step's; a
    fitted prior's draws): below 1 samples nearer the modes, above 1 spreads them (the
    knob of p-diff's accuracy-novelty curve); ``latent_mix`` a > 0: each sample decodes
    ``(1 - a) z_1 + a z_2`` of two prior samples (between members, where a decoder trained
    with ``autoencoder.behaviour.mix`` puts networks that act like the pair's ensemble)."""

    sampler: str = "ddpm"
    steps: int = 0
    eta: float = 0.0
    clip_denoised: bool = True
    temperature: float = 1.0
    latent_mix: float = 0.0

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.steps is None or int(self.steps) < 0:
            raise ValueError(f"sampling steps must be >= 0 (0 = the sampler's default), "
                             f"got {self.steps!r}")
        if not float(self.temperature) > 0:
            raise ValueError(f"sampling temperature must be > 0, got {self.temperature!r}")
        if not 0 <= float(self.latent_mix) < 1:
            raise ValueError(f"sampling latent_mix must be in [0, 1), got {self.latent_mix!r}")

    def steps_for(self, num_timesteps: int) -> int | None:
        """DDIM's step count, or None for DDPM (which runs all ``num_timesteps``)."""
        if self.sampler == "ddpm":
            if self.steps not in (0, num_timesteps):
                raise ValueError(f"ddpm runs all T = {num_timesteps} steps; use sampler='ddim' "
                                 f"for {self.steps} steps")
            return None
        return int(self.steps) or DDIM_DEFAULT_STEPS
