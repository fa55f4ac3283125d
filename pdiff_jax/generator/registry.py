"""Every kind a generator config section may name, and the one builder per section.

``autoencoder.model.kind`` picks a parameter autoencoder; ``diffusion.model.kind``
picks a denoiser network (trained by the diffusion stage) or a latent prior fitted
in closed form instead (``latent_fit.py``: no diffusion, the ablation that asks what
diffusion adds). A new kind is one entry here. The module classes import nothing from
this file, so the table can name them all without an import circle.
"""

from __future__ import annotations

import dataclasses

from pdiff_jax.config import choices

from .autoencoder import FCAutoencoder, ParamAutoencoder
from .denoiser import UNet1D
from .identity_ae import IdentityAutoencoder
from .kinds import pick_kind
from .latent_fit import GaussianFit, KDEFit
from .paper_modules import PaperAutoencoder, PaperDenoiser
from .vae import VariationalAutoencoder

# 'paper': the authors' own modules, ported exactly (paper_modules.py); 'vae': the conv
# AE made variational (vae.py); 'identity': no autoencoder, diffusion on the parameters.
AUTOENCODERS = {"conv": ParamAutoencoder, "fc": FCAutoencoder, "paper": PaperAutoencoder,
                "vae": VariationalAutoencoder, "identity": IdentityAutoencoder}
DENOISERS = {"unet": UNet1D, "paper": PaperDenoiser}
# No network: a density fitted to the zoo's latents, sampled directly.
LATENT_FITS = {"gaussian": GaussianFit, "kde": KDEFit}
# The ``diffusion.model`` section holds the keys of every kind of both tables.
_DIFFUSION_MODELS = {**DENOISERS, **LATENT_FITS}
# The names live in config/choices.py (what the config check accepts); a kind added
# here and not there, or the other way round, fails at import, not in a user's run.
for _table, _names in ((AUTOENCODERS, choices.AUTOENCODER_KINDS),
                       (DENOISERS, choices.DENOISER_KINDS),
                       (LATENT_FITS, choices.LATENT_FIT_KINDS)):
    if tuple(_table) != _names:
        raise ImportError(f"generator kinds {tuple(_table)} differ from config.choices "
                          f"{_names}: add the kind to both")
_DENOISER_DERIVED = ("num_timesteps", "condition", "num_levels")


def build_autoencoder(D: int, kind: str = "conv", **kwargs):
    """The autoencoder of ``kind`` for vectors of D numbers; ``kwargs`` is the config
    section ``autoencoder.model`` (see ``kinds.pick_kind``)."""
    cls, own = pick_kind(AUTOENCODERS, kind, kwargs, section="autoencoder.model",
                         derived=("D",))
    return cls(D=D, **own)


def is_latent_fit(kind: str) -> bool:
    """Whether ``diffusion.model.kind`` names a fitted latent prior, not a denoiser."""
    return kind in LATENT_FITS


def build_latent_fit(kind: str, **kwargs):
    """The latent prior ('gaussian' | 'kde') of the ``diffusion.model`` section."""
    cls, own = pick_kind(_DIFFUSION_MODELS, kind, kwargs, section="diffusion.model",
                         derived=_DENOISER_DERIVED)
    if kind not in LATENT_FITS:
        raise ValueError(f"{kind!r} is a denoiser, not a latent fit {tuple(LATENT_FITS)}")
    return cls(**own)


def build_denoiser(kind: str = "unet", *, num_timesteps: int = 1000, condition: str = "none",
                   num_levels: int = 0, **kwargs):
    """The denoiser of ``kind`` ('unet' | 'paper'); ``kwargs`` is the config section
    ``diffusion.model``. ``num_timesteps`` is the process's T (the paper denoiser embeds
    each t in a table); ``condition`` / ``num_levels`` come from ``generator.condition``
    (only 'unet' takes a condition)."""
    cls, own = pick_kind(_DIFFUSION_MODELS, kind, kwargs, section="diffusion.model",
                         derived=_DENOISER_DERIVED)
    if kind not in DENOISERS:
        raise ValueError(f"{kind!r} is a latent fit, not a denoiser {tuple(DENOISERS)}")
    fields = {f.name for f in dataclasses.fields(cls)}
    if "num_timesteps" in fields:
        own["num_timesteps"] = int(num_timesteps)
    if condition != "none":
        if "condition" not in fields:
            raise ValueError(f"the {kind!r} denoiser is unconditional; use "
                             "--config.generator.diffusion.model.kind=unet for "
                             f"generator.condition.kind={condition!r}")
        own.update(condition=condition, num_levels=int(num_levels))
    return cls(**own)
