"""Mixes of random pairs of rows, ``(1 - a) x_i + a x_j`` with ``a ~ U(0, mix)``.

Three parts of the generator can train on mixes of members: the autoencoder's decoder
(``autoencoder.model.latent_mix``: linear between members), its behavioural term
(``autoencoder.behaviour.mix``: a decoded mix acts like the pair's ensemble) and the
latent prior (``diffusion.latent_mix``: samples land between members, where the decoder
was trained to put working networks).
"""

from __future__ import annotations

import jax


def pair_mix(k_pair, k_weight, n: int, mix: float, dtype):
    """``(partner int[n], a [n, 1])``: each row's partner (a random permutation, so a row
    may draw itself) and its weight ``a ~ U(0, mix)``."""
    partner = jax.random.permutation(k_pair, n)
    return partner, mix * jax.random.uniform(k_weight, (n, 1), dtype)


def mix_rows(x, partner, a):
    """``(1 - a) x + a x[partner]`` for ``x [n, ...]`` and ``a [n, 1]``."""
    a = a.reshape(a.shape[:1] + (1,) * (x.ndim - 1))
    return (1 - a) * x + a * x[partner]
