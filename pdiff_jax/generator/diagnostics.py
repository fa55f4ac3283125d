"""What an autoencoder learned about its zoo: which latent dimensions carry the zoo, and
whether the zoo members survive the round trip through it.

Stored in the autoencoder artifact's meta (``stages.train_autoencoder`` and the pipeline's
autoencoder stage) and shown in report.md. A latent dimension whose spread across the zoo
is below the training latent noise cannot tell members apart: the decoder was trained to
ignore differences of that size. Reconstruction accuracy bounds what any latent sampler
can reach: a generator is no better than its decoder's copies of the zoo.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

VARYING_STD = 1e-2  # a latent dimension "varies" when its std across the zoo exceeds this


def latent_diagnostics(latents, *, latent_noise: float = 0.0) -> dict:
    """Summary of the zoo's latents ``f32[K, ...]`` (any latent shape).

    Returns ``latent_dims`` (numbers per latent), ``latent_dims_varying`` (std across
    the zoo > ``VARYING_STD``), ``latent_dims_above_noise`` (std > ``latent_noise``;
    equal to ``latent_dims_varying`` without noise), and the per-dimension std's
    ``latent_std_max`` / ``latent_std_median`` / ``latent_std_min``.
    """
    z = np.asarray(latents, np.float64)
    std = z.reshape(len(z), -1).std(0)
    threshold = max(float(latent_noise), VARYING_STD)
    return {"latent_dims": int(std.size),
            "latent_dims_varying": int((std > VARYING_STD).sum()),
            "latent_dims_above_noise": int((std > threshold).sum()),
            "latent_std_max": float(std.max()), "latent_std_median": float(np.median(std)),
            "latent_std_min": float(std.min())}


# Copies through a working autoencoder sit within about a point of the zoo's median
# (MLP-3 95.19 against 95.15, ConvNet-3 97.34 against 97.40); a collapsed one does not
# (ConvNet-3 with the label term at weight 1: 29.92).
RECONSTRUCTION_GAP = 5.0


def reconstruction_gap(meta: dict, zoo_test_acc) -> str | None:
    """A warning when the zoo's members through the autoencoder lose more than
    ``RECONSTRUCTION_GAP`` points of median test accuracy (None otherwise): every sample
    decodes through the same decoder, so none can be better than these copies."""
    zoo_median = float(np.median(np.asarray(zoo_test_acc, np.float64)))
    copies = meta.get("recon_test_acc_median")
    if copies is None or copies >= zoo_median - RECONSTRUCTION_GAP:
        return None
    return (f"autoencoder: the zoo's members through it have median test accuracy "
            f"{copies:.2f} % against the zoo's {zoo_median:.2f} %: it has lost the networks "
            f"(relative reconstruction error {meta.get('rel_recon_error', float('nan')):.2f}). "
            f"With generator.autoencoder.behaviour.weight > 0, lower the weight (a large "
            f"behavioural loss can drown the reconstruction); otherwise train longer or "
            f"widen the latent.")


def reconstruction_accuracy(decode: Callable, latents, accuracy: Callable) -> dict:
    """Test accuracy of the zoo members after the round trip: ``decode(latents)`` f32[K, D]
    measured by ``accuracy`` (vectors -> f32[K] percent). Returns best/median/min/mean."""
    acc = np.asarray(accuracy(np.asarray(decode(latents), np.float32)), np.float64)
    return {"recon_test_acc_best": float(acc.max()), "recon_test_acc_median": float(np.median(acc)),
            "recon_test_acc_min": float(acc.min()), "recon_test_acc_mean": float(acc.mean())}
