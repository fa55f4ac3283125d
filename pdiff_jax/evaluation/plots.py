"""Figures of the evaluation (matplotlib, Agg backend, PNG files).

Each function takes arrays and an output path, writes one PNG and returns its path.
`plot_all` draws every figure that the data allow from a `report.build_results`
dict (plus optional latents and trajectories) and returns {name: path}.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

from pdiff_jax import artifacts

_ORIG, _GEN, _NOISE = "tab:blue", "tab:orange", "tab:gray"


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _color(name: str, i: int):
    if name.startswith("original"):
        return _ORIG
    if name.startswith("p-diff") or name == "pdiff":
        return _GEN
    return plt.get_cmap("tab10")(2 + i % 8)


def accuracy_distributions(path, groups: Mapping[str, np.ndarray], *,
                           lines: Mapping[str, float] | None = None,
                           title: str = "Test accuracy by group") -> Path:
    """Strip + box plot of test accuracy (percent) per group.

    groups: {name: f32[n_g]} in display order (e.g. original, p-diff, baselines).
    lines: optional {label: accuracy} drawn as horizontal reference lines
      (e.g. original best, ensemble).
    """
    names = [k for k, v in groups.items() if np.size(v)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 4.2))
    rng = np.random.default_rng(0)  # jitter only
    data = [np.asarray(groups[k], dtype=float).reshape(-1) for k in names]
    if names:
        ax.boxplot(data, positions=np.arange(len(names)), widths=0.5, showfliers=False)
    for i, (name, acc) in enumerate(zip(names, data, strict=True)):
        x = i + rng.uniform(-0.18, 0.18, size=acc.size)
        ax.scatter(x, acc, s=9, alpha=0.6, color=_color(name, i), zorder=3)
    for j, (label, value) in enumerate((lines or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=plt.get_cmap("Set1")(j),
                   label=f"{label} {value:.2f}")
    if lines:
        ax.legend(fontsize=8, loc="lower left")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def accuracy_vs_novelty(path, points: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                        title: str = "Accuracy vs similarity to the zoo") -> Path:
    """Scatter of test accuracy against max IoU with the zoo (the paper's Fig. 3g).

    points: {name: (max_iou f32[n], test_acc f32[n])}. For the originals pass their
    max IoU with another original. Further right = closer to a training model.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    for i, (name, (iou, acc)) in enumerate(points.items()):
        iou = np.asarray(iou, dtype=float).reshape(-1)
        acc = np.asarray(acc, dtype=float).reshape(-1)
        if iou.size == 0:
            continue
        marker = "^" if name.startswith("p-diff") else "o"
        ax.scatter(iou, acc, s=14, alpha=0.65, marker=marker, color=_color(name, i),
                   label=f"{name} (n={iou.size})")
    ax.set_xlabel("max IoU of wrong predictions with any original (nearest neighbour)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def tsne_latents(path, latents_orig, latents_gen, latents_noisy=None, *,
                 noise: float = 0.1, seed: int = 0, perplexity: float = 30.0) -> Path:
    """t-SNE of latents (the paper's Fig. 3h): originals, generated, originals + noise.

    latents_orig: f32[K, ...], latents_gen: f32[n, ...] (flattened per model);
    latents_noisy: f32[m, ...] or None to draw latents_orig + N(0, noise^2) here.
    Perplexity is lowered below the number of points when needed; with fewer than
    4 points in all, a PCA projection is drawn instead.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    lo = np.asarray(latents_orig, dtype=np.float64).reshape(len(latents_orig), -1)
    lg = np.asarray(latents_gen, dtype=np.float64).reshape(len(latents_gen), -1)
    if latents_noisy is None:
        rng = np.random.default_rng(seed)
        ln = lo + noise * rng.standard_normal(lo.shape)
    else:
        ln = np.asarray(latents_noisy, dtype=np.float64).reshape(len(latents_noisy), -1)
    x = np.concatenate([lo, ln, lg])
    n = x.shape[0]
    if n >= 4 and x.shape[1] >= 2:
        perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
        # One OpenMP thread: for a few hundred points, more threads spin-wait and were
        # 20x slower on a loaded 2-core machine (30 s vs 1.5 s for 400 points).
        with threadpool_limits(limits=1, user_api="openmp"):
            emb = TSNE(n_components=2, perplexity=perp, init="pca",
                       random_state=seed).fit_transform(x)
        method = f"t-SNE (perplexity {perp:.1f})"
    else:
        k = min(2, n, x.shape[1])
        emb = np.zeros((n, 2))
        if k:
            emb[:, :k] = PCA(n_components=k).fit_transform(x) if n > 1 else 0.0
        method = "PCA (too few points for t-SNE)"
    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    a, b = len(lo), len(lo) + len(ln)
    ax.scatter(*emb[:a].T, s=12, color=_ORIG, label=f"original (n={len(lo)})")
    ax.scatter(*emb[a:b].T, s=12, color=_NOISE, alpha=0.6, marker="x",
               label=f"original + noise {noise:g} (n={len(ln)})")
    ax.scatter(*emb[b:].T, s=14, color=_GEN, marker="^", label=f"p-diff (n={len(lg)})")
    ax.set_title(f"Latents, {method}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8)
    return _save(fig, path)


def _pca_basis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean f[D] and top-2 principal directions f[2, D] (zero-padded if rank < 2)."""
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = np.zeros((2, x.shape[1]))
    basis[: min(2, vt.shape[0])] = vt[:2]
    return mean, basis


def trajectories_2d(path, trajectories, zoo, *, generated=None,
                    title: str = "Sampling trajectories (PCA of the zoo)") -> Path:
    """Sampling trajectories projected on the zoo's first two principal axes (Fig. 4a).

    trajectories: f32[n_traj, T, D], each from the first sampling step (noise) to the
      last (the decoded sample); D may be parameters or latents, as long as `zoo` is
      in the same space.
    zoo: f32[K, D] the training vectors: the PCA is fitted on them (or on all points
      when K < 3); their mean is drawn as a star and their spread as a 2-sigma ellipse.
    generated: optional f32[n, D] final samples, drawn as points.
    """
    tr = np.asarray(trajectories, dtype=np.float64)
    if tr.ndim == 2:
        tr = tr[None]
    z = np.asarray(zoo, dtype=np.float64)
    fit_on = z if z.shape[0] >= 3 else np.concatenate([z, tr.reshape(-1, z.shape[1])])
    mean, basis = _pca_basis(fit_on)
    proj = lambda v: (v - mean) @ basis.T
    pz = proj(z)
    centre = proj(z.mean(axis=0, keepdims=True))[0]
    ends = [proj(t[-1:]) for t in tr]
    pg = None
    if generated is not None:
        pg = proj(np.asarray(generated, dtype=np.float64).reshape(-1, z.shape[1]))
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 5.0))
    for ax, zoom in zip(axes, (False, True), strict=True):
        ax.scatter(*pz.T, s=8, color=_ORIG, alpha=0.5, label=f"zoo (K={len(z)})")
        if len(z) >= 2:
            cov = np.cov(pz.T) + 1e-12 * np.eye(2)
            vals, vecs = np.linalg.eigh(cov)
            angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
            ax.add_patch(Ellipse(centre, 4 * np.sqrt(vals[1]), 4 * np.sqrt(vals[0]),
                                 angle=angle, fill=False, ls="--", color=_ORIG,
                                 label="zoo 2-sigma"))
        ax.scatter(*centre, marker="*", s=220, color="gold", edgecolor="k", zorder=5,
                   label="zoo mean")
        cmap = plt.get_cmap("autumn")
        for i, t in enumerate(tr):
            p = proj(t)
            c = cmap(i / max(1, len(tr) - 1) * 0.8)
            ax.plot(*p.T, lw=1, color=c, alpha=0.8)
            ax.scatter(*p[0], marker="o", s=25, color=c, edgecolor="k", zorder=4)
            ax.scatter(*p[-1], marker="^", s=45, color=c, edgecolor="k", zorder=4)
        if pg is not None:
            ax.scatter(*pg.T, s=10, marker="^", color=_GEN, alpha=0.5, label="p-diff samples")
        if zoom:
            # Noise starts far away: the right panel zooms on the zoo and the end points.
            near = np.concatenate([pz, *ends] + ([pg] if pg is not None else []))
            lo, hi = near.min(axis=0), near.max(axis=0)
            pad = 0.1 * np.maximum(hi - lo, 1e-9)
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            ax.set_title("zoom on the zoo and the end points")
        else:
            ax.set_title(title + "\n(o: start from noise, ^: end)")
            ax.legend(fontsize=8)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_all(results: Mapping, outdir, *, latents_orig=None, latents_gen=None,
             latents_noisy=None, trajectories=None, zoo=None, generated=None
             ) -> dict[str, Path]:
    """Every figure the data allow, from a `report.build_results` dict.

    Uses results['per_model'] for accuracies and max IoUs; latents (t-SNE) and
    trajectories + zoo (PCA trajectories) are optional arrays. Returns {name: path}
    with names 'accuracy', 'novelty', 'tsne', 'trajectories'.
    """
    outdir = Path(outdir)
    per = results.get("per_model", {})
    out: dict[str, Path] = {}
    groups: dict[str, np.ndarray] = {}
    points: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, label in [("original", "original"), ("pdiff", "p-diff")]:
        if name in per:
            groups[label] = np.asarray(per[name]["test_acc"])
    for name, d in per.get("baselines", {}).items():
        groups[name] = np.asarray(d["test_acc"])
    if "finetuned" in per:
        groups["finetuned"] = np.asarray(per["finetuned"]["test_acc"])
    lines = {}
    if "original" in results:
        lines["original best"] = results["original"]["best"]
    if "ensemble" in results and results["ensemble"].get("acc") is not None:
        lines["ensemble"] = results["ensemble"]["acc"]
    if groups:
        out["accuracy"] = accuracy_distributions(outdir / artifacts.ACCURACY_PNG, groups,
                                                 lines=lines)
    if "original" in per and "max_iou" in per["original"]:
        points["original"] = (per["original"]["max_iou"], per["original"]["test_acc"])
    if "pdiff" in per and "max_iou" in per["pdiff"]:
        points["p-diff"] = (per["pdiff"]["max_iou"], per["pdiff"]["test_acc"])
    for name, d in per.get("baselines", {}).items():
        if "max_iou" in d:
            points[name] = (d["max_iou"], d["test_acc"])
    if "finetuned" in per and "max_iou" in per["finetuned"]:
        points["finetuned"] = (per["finetuned"]["max_iou"], per["finetuned"]["test_acc"])
    if points:
        out["novelty"] = accuracy_vs_novelty(outdir / artifacts.NOVELTY_PNG, points)
    if latents_orig is not None and latents_gen is not None:
        out["tsne"] = tsne_latents(outdir / artifacts.TSNE_PNG, latents_orig, latents_gen,
                                   latents_noisy)
    if trajectories is not None and zoo is not None:
        out["trajectories"] = trajectories_2d(outdir / artifacts.TRAJECTORIES_PNG, trajectories,
                                              zoo, generated=generated)
    return out
