"""The authors' generator and training recipe as config overrides (JAX-free): one source for
``configs/paper.py`` (their 30,000 + 30,000 steps) and the ``paper_vs_ours`` suite (the
base config's steps, so both rows train equally long).

Values from their ``configs/system/ae_ddpm.yaml`` (branch ``main``); configs/paper.py's
docstring says what each means and which of their defects the port leaves out.
"""

from __future__ import annotations

LATENT_NOISE_YAML = 0.5  # configs/system/ae_ddpm.yaml, what their runs used
LATENT_NOISE_TEXT = 0.1  # the paper's text (Sec. 4 / Tab. 13)
INPUT_NOISE = 0.001
STEPS = 30_000  # per stage


def paper_generator_overrides(*, size: str, latent_noise: float = LATENT_NOISE_YAML,
                              steps: int | None = STEPS) -> dict[str, object]:
    """``{dotted config key: value}`` that turn a config's generator into theirs.

    ``size``: their ``medium`` or ``small`` autoencoder; ``steps=None`` keeps the
    config's step counts.
    """
    gen = "generator"
    out: dict[str, object] = {
        f"{gen}.normalization.mode": "none",
        f"{gen}.autoencoder.model.kind": "paper",
        f"{gen}.autoencoder.model.size": size,
        f"{gen}.autoencoder.model.input_noise": INPUT_NOISE,
        f"{gen}.autoencoder.model.latent_noise": latent_noise,
        f"{gen}.autoencoder.model.latent_bound": 1.0,  # their clamp; sampling clips the same
        f"{gen}.diffusion.model.kind": "paper",
        f"{gen}.diffusion.process.num_timesteps": 1000,
        f"{gen}.diffusion.process.beta_start": 1e-4,
        f"{gen}.diffusion.process.beta_end": 2e-2,
        f"{gen}.sampling.sampler": "ddpm",
        f"{gen}.sampling.steps": 0,
        f"{gen}.sampling.clip_denoised": True,
    }
    for stage, ema in (("autoencoder", 0.0), ("diffusion", 0.9999)):
        train = f"{gen}.{stage}.train"
        out.update({f"{train}.batch_size": 200, f"{train}.learning_rate": 1e-3,
                    f"{train}.b1": 0.9, f"{train}.b2": 0.999, f"{train}.weight_decay": 2e-6,
                    f"{train}.ema_decay": ema})
        if steps is not None:
            out[f"{train}.steps"] = steps
    return out
