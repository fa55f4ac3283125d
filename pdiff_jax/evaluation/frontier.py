"""The accuracy-novelty frontier: p-diff against every trivial generator, with equal draws.

Zeng et al. (2025, "Generative Modeling of Weights: Generalization or Memorization?")
ask of every weight generator whether it beats the cheapest ways of making "new"
networks from its training zoo. Each such way is a *family* with one knob, swept to
trace a curve of (novelty, accuracy) points:

  noise          a random member + Gaussian noise of ``a`` times each tensor's RMS
  interpolation  ``(1 - a) x_i + a x_j`` of two random distinct (aligned) members
  dirichlet      a mix of ``k`` random distinct members with Dirichlet(1) weights
  pca_gaussian   the zoo mean + ``s`` times a Gaussian with the zoo's covariance on its
                 K - 1 principal directions (the space the autoencoder reads)
  finetune       random members trained ``m`` more steps on a new data order
                 (spends compute: a reference, not a free baseline)

and p-diff is swept over its sampling temperature (or, for an accuracy-conditioned
generator, over the guidance scale toward the zoo's top accuracy; or over the weight of
a mix of two prior samples in latent space). Every point has the
same number of draws ``n``, is measured by the same evaluator and summarized by the
same rule (best by training accuracy; median).

Novelty of a sample (``nn_iou_any``): its largest IoU of wrong predictions with any zoo
member *or any other sample of its group*, averaged over the group. It is low only for
samples that are neither copies of members nor collapsed onto one mode (a group of
near-identical samples scores high even far from every member). Beside it each point
reports the zoo-only part (``nn_max_iou``), the within-group part (``nn_iou_within``) and
the distance to the nearest member (``nn_l2``).

``margin[family]``: the best p-diff point's median minus the family's median at the same
``nn_iou_any`` (its curve in knob order, linear between consecutive points, the best
crossing where it passes there twice); ``None`` with a reason when p-diff lies outside
the family's range. ``margin_interval[family]``: how far that number moves with the luck
of the draws, a 90 % bootstrap interval (each point's n samples resampled, their
accuracies and novelties kept, the margin recomputed; two draws of 100 from one MLP-3
generator differed by up to a quarter point in median).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from pdiff_jax.config.choices import FRONTIER_FAMILIES
from pdiff_jax.evaluation import baselines, novelty, protocol
from pdiff_jax.generator.implicit_basis import top_eigen


@dataclasses.dataclass(frozen=True)
class FrontierSettings:
    """The ``evaluate.frontier`` config section: one knob tuple per family (empty: the
    family is left out), p-diff's temperatures, and the fine-tuning budget."""

    enabled: bool = True
    # Margins are read off each curve linearly between its points, and these curves bend
    # down with novelty: a coarse grid's chord lies below the curve and flatters p-diff
    # (MLP-3, seed 1: interpolation at a = 0.2 and 0.4 lies 0.18 and 0.24 points above
    # the chords of 0.15-0.3 and 0.3-0.5).
    noise: tuple = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3)  # relative noise amplitude a
    interpolation: tuple = (0.01, 0.05, 0.15, 0.2, 0.3, 0.4, 0.5)  # a: second member's weight
    dirichlet: tuple = (2, 4, 8)                   # k members mixed
    pca_gaussian: tuple = (0.05, 0.2, 0.5, 1.0, 2.0)  # s: the scale of the zoo's covariance
    finetune: tuple = (5, 20, 100)                 # m: more steps (one run reaches all)
    finetune_members: int = 25                     # members fine-tuned (0: n, as the others)
    pdiff: tuple = (0.5, 0.75, 1.0, 1.25, 1.5)     # temperatures, guidance scales or mixes
    # 'temperature', 'guidance' (a conditional generator: samples asked for the zoo's
    # top accuracy, the knob the guidance scale) or 'latent_mix' (each sample decodes
    # (1 - a) z_1 + a z_2 of two prior samples, the knob a; generator.sampling).
    pdiff_knob: str = "temperature"

    @classmethod
    def from_section(cls, section: Mapping) -> FrontierSettings:
        d = section.to_dict() if hasattr(section, "to_dict") else dict(section)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def knobs(self, family: str) -> tuple:
        return tuple(getattr(self, family))


# ----------------------------------------------------------------------------- families


def _pick_distinct(key, num: int, k: int, n: int) -> jax.Array:
    """i32[n, k]: k distinct member indices per row, uniformly (ranks of iid uniforms)."""
    return jnp.argsort(jax.random.uniform(key, (n, num)), axis=1)[:, :k]


def interpolation(key, zoo, a: float, n: int) -> np.ndarray:
    """f32[n, D]: ``(1 - a) x_i + a x_j`` of two random distinct members."""
    z = jnp.asarray(zoo, jnp.float32)
    if z.shape[0] < 2:
        raise ValueError("interpolation needs a zoo of at least 2 members")
    ij = _pick_distinct(key, z.shape[0], 2, n)
    return np.asarray((1.0 - a) * z[ij[:, 0]] + a * z[ij[:, 1]])


def dirichlet_mix(key, zoo, k: int, n: int) -> np.ndarray:
    """f32[n, D]: mixes of ``k`` random distinct members with Dirichlet(1, ..., 1) weights."""
    z = jnp.asarray(zoo, jnp.float32)
    k = int(min(k, z.shape[0]))
    k_pick, k_weights = jax.random.split(key)
    idx = _pick_distinct(k_pick, z.shape[0], k, n)                         # [n, k]
    w = jax.random.dirichlet(k_weights, jnp.ones((k,)), (n,))              # [n, k]
    weights = jnp.zeros((n, z.shape[0])).at[jnp.arange(n)[:, None], idx].set(w)
    return np.asarray(jnp.matmul(weights, z, precision=jax.lax.Precision.HIGHEST))


def principal_basis(zoo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean f32[D], std f64[r], coefficients f64[r, K])`` of the zoo's covariance on its
    r <= K - 1 principal directions (population covariance), from the K x K Gram matrix.

    Direction i is ``coefficients[i] @ (zoo - mean)``: the f[r, D] basis itself is never
    built, and the Gram matrix is summed over blocks of columns, so memory stays that of the
    zoo (an 11M-parameter zoo of 200 would need 8.8 GB more for the basis in f32, 17.6 GB
    for a float64 copy)."""
    x = np.asarray(zoo, np.float32)
    mean = x.mean(0, dtype=np.float64).astype(np.float32)
    gram = np.zeros((len(x), len(x)))
    for i in range(0, x.shape[1], baselines.COLUMN_BLOCK):   # no float64 copy of the zoo
        xc = (x[:, i:i + baselines.COLUMN_BLOCK] - mean[i:i + baselines.COLUMN_BLOCK]
              ).astype(np.float64)
        gram += xc @ xc.T
    eigval, eigvec = top_eigen(gram)
    singular = np.sqrt(eigval)
    return mean, singular / math.sqrt(len(x)), eigvec.T / singular[:, None]


def pca_gaussian(key, zoo, s: float, n: int, basis=None) -> np.ndarray:
    """f32[n, D]: the zoo mean + ``s`` x a Gaussian with the zoo's covariance restricted to
    its principal directions (``s = 1``: that covariance itself)."""
    mean, std, coefficients = principal_basis(zoo) if basis is None else basis
    eps = np.asarray(jax.random.normal(key, (n, len(std))), np.float64)
    weights = ((s * eps * std) @ coefficients).astype(np.float32)         # [n, K]
    return mean + weights @ (np.asarray(zoo, np.float32) - mean)


def draw(family: str, knob, key, zoo, *, n: int, segments=None, basis=None) -> np.ndarray:
    """f32[n, D]: ``n`` members of a training-free family at ``knob``."""
    if family == "noise":
        return np.asarray(baselines.noisy_zoo(key, zoo, float(knob), n, segments))
    if family == "interpolation":
        return interpolation(key, zoo, float(knob), n)
    if family == "dirichlet":
        return dirichlet_mix(key, zoo, int(knob), n)
    if family == "pca_gaussian":
        return pca_gaussian(key, zoo, float(knob), n, basis)
    raise ValueError(f"no training-free family {family!r}; families: {FRONTIER_FAMILIES}")


# ----------------------------------------------------------------------------- novelty


def _nearest_iou(wrong_zoo, wrong_group):
    """``(nearest, to_zoo, within)`` f[n]: each sample's largest IoU of wrong predictions
    with any member or other sample, with members only, with other samples only."""
    to_zoo = novelty.iou_matrix(wrong_group, wrong_zoo).max(axis=1)
    within = novelty.offdiag_max(novelty.iou_matrix(wrong_group, wrong_group))
    nearest = np.maximum(to_zoo, within) if len(wrong_group) > 1 else to_zoo
    return nearest, to_zoo, within


def novelty_of_group(wrong_zoo, wrong_group, vec_zoo, vec_group, iou=None) -> dict:
    """The novelty fields of one point (module docstring), averaged over the group
    (``iou``: ``_nearest_iou`` of the group, where the caller has it already)."""
    nearest, to_zoo, within = _nearest_iou(wrong_zoo, wrong_group) if iou is None else iou
    nn_l2 = np.sqrt(novelty.sq_distances(vec_group, vec_zoo)).min(axis=1)
    return {"nn_iou_any": float(nearest.mean()), "nn_max_iou": float(to_zoo.mean()),
            "nn_iou_within": float(np.nanmean(within)) if len(wrong_group) > 1 else None,
            "nn_l2": float(nn_l2.mean())}


def point(knob, measured, zoo_wrong, zoo_vectors) -> tuple[dict, tuple]:
    """One frontier point of a measured group (``groups.measure``), and what its margin's
    bootstrap needs: ``(knob, test_acc f[n], each sample's nn_iou_any f[n])``."""
    iou = _nearest_iou(zoo_wrong, measured.wrong)
    summary = protocol.summarize(measured.train_acc, measured.test_acc)
    fields = {"knob": knob, "n": len(measured.test_acc), "median": summary["median"],
              "best": summary["best"], "avg": summary["avg"],
              **novelty_of_group(zoo_wrong, measured.wrong, zoo_vectors, measured.vectors, iou)}
    return fields, (knob, np.asarray(measured.test_acc), iou[0])


# ----------------------------------------------------------------------------- margins


def median_at(points: Sequence[Mapping], novelty_value: float) -> float | None:
    """The family's median at ``novelty_value``: its curve is traced in knob order, linear
    between consecutive points; where it passes ``novelty_value`` more than once (a family
    whose novelty turns back, e.g. a Gaussian so wide that every sample fails alike) the
    best crossing counts. None when the curve never reaches ``novelty_value``."""
    pts = [(p["nn_iou_any"], p["median"]) for p in points]
    crossings = [y0 if x1 == x0 else y0 + (y1 - y0) * (novelty_value - x0) / (x1 - x0)
                 for (x0, y0), (x1, y1) in itertools.pairwise(pts)
                 if min(x0, x1) <= novelty_value <= max(x0, x1)]
    crossings += [y for x, y in pts if x == novelty_value]
    return max(crossings, default=None)


def margin(pdiff_points: Sequence[Mapping], family_points: Sequence[Mapping]) -> dict:
    """``{"value", "pdiff_knob", "reason"}``: the largest median lead of a p-diff point over
    the family at the same ``nn_iou_any`` (which p-diff knob gave it); value None, with
    the reason, when no p-diff point lies inside the family's novelty range."""
    leads = [(p["median"] - m, p["knob"]) for p in pdiff_points
             if (m := median_at(family_points, p["nn_iou_any"])) is not None]
    if leads:
        value, knob = max(leads)
        return {"value": float(value), "pdiff_knob": knob, "reason": None}
    lo = min((p["nn_iou_any"] for p in family_points), default=float("nan"))
    hi = max((p["nn_iou_any"] for p in family_points), default=float("nan"))
    return {"value": None, "pdiff_knob": None,
            "reason": f"p-diff's nn_iou_any "
                      f"{sorted(round(p['nn_iou_any'], 3) for p in pdiff_points)} lies outside "
                      f"the family's [{lo:.3f}, {hi:.3f}]; extend its knob"}


INTERVAL = (0.05, 0.95)      # the bootstrap interval's quantiles
BOOTSTRAP_RESAMPLES = 1000


def _resampled_points(key, test_acc, nearest, resamples: int) -> list[dict]:
    """``resamples`` bootstrap copies of one point: the median and mean novelty of its n
    samples drawn with replacement (each sample keeps the novelty it had in its group)."""
    idx = np.asarray(jax.random.randint(key, (resamples, len(test_acc)), 0, len(test_acc)))
    medians = np.median(np.asarray(test_acc)[idx], axis=1)
    novelties = np.asarray(nearest)[idx].mean(axis=1)
    return [{"median": float(m), "nn_iou_any": float(v)} for m, v in zip(medians, novelties,
                                                                          strict=True)]


def margin_intervals(key, pdiff_draws: Sequence, family_draws: Mapping[str, Sequence], *,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """``{family: [low, high] | None}``: the bootstrap interval (``INTERVAL``) of each
    family's margin. A draw is ``(knob, test_acc f[n], nearest f[n])``; resample r of every
    point enters resample r of the margin. None when p-diff lies outside the family's
    range in more than a tenth of the resamples (its margin has no interval worth the name).
    """
    def resampled(draws, salt):
        return [_resampled_points(jax.random.fold_in(key, salt * 1009 + i), acc, near, resamples)
                for i, (_, acc, near) in enumerate(draws)]

    knobs = [knob for knob, _, _ in pdiff_draws]
    pdiff = resampled(pdiff_draws, 0)
    pdiff = [[dict(p[r], knob=k) for p, k in zip(pdiff, knobs, strict=True)]
             for r in range(resamples)]                       # resample r: p-diff's points
    out = {}
    for j, (family, draws) in enumerate(family_draws.items(), start=1):
        points = resampled(draws, j)
        values = [margin(pdiff[r], [p[r] for p in points])["value"] for r in range(resamples)]
        values = [v for v in values if v is not None]
        out[family] = (None if len(values) < 0.9 * resamples
                       else [float(q) for q in np.quantile(values, INTERVAL)])
    return out


# ----------------------------------------------------------------------------- the frontier


def _family_key(key, family: str, knob):
    # Each point's draws depend on its family and knob only: adding a point moves no other.
    return jax.random.fold_in(key, zlib.crc32(f"{family}:{knob}".encode()) & 0x7FFFFFFF)


def compute_frontier(settings: FrontierSettings, *, key, zoo, zoo_measured, measure: Callable,
                     sample_pdiff: Callable, finetune: Callable | None, n: int) -> dict:
    """Every family's curve and p-diff's, and the margins (the results.json ``frontier``).

    ``measure(vectors) -> Group`` evaluates parameter sets as every group is evaluated;
    ``sample_pdiff(knob, key) -> f32[n, D]`` draws from the trained generator at one of
    ``settings.pdiff`` (a temperature or a guidance scale: ``settings.pdiff_knob``);
    ``finetune(member_indices, steps_tuple, key) -> {steps: f32[m, D]}`` trains members
    further (None: the family is left out). ``zoo_measured``: the zoo's Group.
    """
    wrong_zoo, vec_zoo = zoo_measured.wrong, zoo.vectors
    basis = principal_basis(vec_zoo)
    families: dict[str, list] = {}
    draws: dict[str, list] = {}     # (knob, test_acc, nearest) per point: the intervals
    failed: dict[str, str] = {}
    for family in FRONTIER_FAMILIES:
        knobs = settings.knobs(family)
        if not knobs or (family == "finetune" and finetune is None):
            continue
        if family == "finetune":
            m = settings.finetune_members or n
            members = np.asarray(jax.random.choice(_family_key(key, family, "members"),
                                                   len(vec_zoo), (m,), replace=m > len(vec_zoo)))
            try:
                drawn = finetune(members, knobs, _family_key(key, family, "order"))
            except FloatingPointError as e:   # TrainingDivergedError too
                # One diverged member must not cost the frontier (hours of evaluation on a
                # big zoo): the family is left out, and results.json says why.
                logging.warning("frontier: the finetune family is left out: %s", e)
                failed[family] = f"fine-tuning diverged: {e}"
                continue
        else:
            drawn = {k: draw(family, k, _family_key(key, family, k), vec_zoo, n=n,
                             segments=zoo.segments, basis=basis) for k in knobs}
        families[family], draws[family] = [], []
        for knob, vectors in drawn.items():
            logging.info("frontier: %s at %s (%d sets)", family, knob, len(vectors))
            fields, drawn_point = point(knob, measure(vectors), wrong_zoo, vec_zoo)
            families[family].append(fields)
            draws[family].append(drawn_point)
    pdiff, pdiff_draws = [], []
    for knob in settings.pdiff:
        vectors = sample_pdiff(float(knob), _family_key(key, "pdiff", knob))
        logging.info("frontier: p-diff at %s %s", settings.pdiff_knob, knob)
        fields, drawn_point = point(knob, measure(vectors), wrong_zoo, vec_zoo)
        pdiff.append(fields)
        pdiff_draws.append(drawn_point)
    members = novelty_of_group(wrong_zoo, wrong_zoo, vec_zoo, vec_zoo)
    zoo_summary = protocol.summarize(zoo_measured.train_acc, zoo_measured.test_acc)
    # Against itself each member's nearest zoo member is itself: its novelty is the
    # within-group part (its nearest other member).
    zoo_point = {"n": len(vec_zoo), "median": zoo_summary["median"], "best": zoo_summary["best"],
                 "nn_iou_any": members["nn_iou_within"], "nn_iou_within": members["nn_iou_within"]}
    margins = {f: margin(pdiff, pts) for f, pts in families.items() if pdiff}
    intervals = (margin_intervals(_family_key(key, "bootstrap", 0), pdiff_draws, draws)
                 if pdiff else {})
    return {"novelty": "nn_iou_any", "families": families, "pdiff": pdiff,
            "pdiff_knob": settings.pdiff_knob, "zoo": zoo_point,
            "margin": {f: m.pop("value") for f, m in margins.items()},
            "margin_interval": intervals, "margin_notes": margins, "failed": failed}
