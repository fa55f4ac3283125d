"""Generated parameters as initialization (paper Tab. 9): how fast does ordinary training
reach a target accuracy from each starting point?

Four starting points for the zoo's parameter vector (the subset, or the whole network
of a seed zoo), each merged into the zoo's base variables:

- ``pdiff``: sets sampled by the trained generator (a conditional run: its top level);
- ``zoo_mean``: the uniform average of the zoo (the paper's "ensemble"; chance level for
  unaligned seed zoos, whose hidden units are permuted relative to each other);
- ``zoo_member``: a random zoo member (of the requested level, in a conditional run);
- ``random``: the architecture's own initialization (for a BatchNorm subset: scale 1,
  bias 0; for a whole network: a fresh ``model_def.init`` per draw).

Each is trained by ``training.train_subset_snapshots``, the loop that collects the zoo
(a whole network is the subset ``.*`` with ``split = None``), with a snapshot every
``every`` steps: the accuracy curve. "Steps to target" is the first snapshot whose test
accuracy reaches the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from pdiff_jax.evaluation.evaluator import compute_tail_inputs
from pdiff_jax.params.subset import flatten_subset, merge, unflatten_subset
from pdiff_jax.zoo import training

INIT_KINDS = ("pdiff", "zoo_mean", "zoo_member", "random")
LABELS = {"pdiff": "(a) p-diff samples", "zoo_mean": "(b) zoo mean",
          "zoo_member": "(c) random zoo member", "random": "(d) random init"}


def initial_vectors(kind: str, *, key, zoo, generated: np.ndarray, model_def, n: int,
                    members=None) -> np.ndarray:
    """f32[n, D]: ``n`` starting vectors of ``kind`` (one of ``INIT_KINDS``).

    ``generated`` f32[>= n, D] are p-diff's samples; ``members`` (default: all) the zoo
    rows a random member is drawn from."""
    vectors = np.asarray(zoo.vectors, np.float32)
    if kind == "pdiff":
        if len(generated) < n:
            raise ValueError(f"need {n} generated sets, got {len(generated)}")
        return np.asarray(generated[:n], np.float32)
    if kind == "zoo_mean":
        return np.repeat(vectors.mean(0, keepdims=True), n, 0)
    if kind == "zoo_member":
        pool = np.arange(len(vectors)) if members is None else np.asarray(members)
        idx = np.asarray(jax.random.choice(key, pool, (n,), replace=len(pool) < n))
        return vectors[idx]
    if kind == "random":
        return np.stack([np.asarray(flatten_subset(
            model_def.init(jax.random.fold_in(key, i)), zoo.spec)) for i in range(n)])
    raise ValueError(f"init kind must be one of {INIT_KINDS}, got {kind!r}")


def train_from(vector, *, zoo, model_def, tail_inputs, labels, steps: int, every: int,
               optimizer: str, lr: float, batch_size: int, momentum: float, seed: int,
               mesh=None) -> np.ndarray:
    """f32[steps // every + 1, D]: ``vector`` (step 0), then a snapshot every ``every``
    steps of the ordinary training loop (``training.train_subset_snapshots``)."""
    variables = merge(zoo.base, unflatten_subset(np.asarray(vector, np.float32), zoo.spec))
    snapshots = training.train_subset_snapshots(
        model_def, variables, zoo.spec, zoo.split_point, tail_inputs, labels,
        num_snapshots=steps // every, save_every=every, optimizer=optimizer, lr=lr,
        batch_size=batch_size, momentum=momentum, seed=seed, mesh=mesh,
        desc="from init", batch_norm=training.batch_norm_mode(zoo.spec, zoo.split_point))
    return np.concatenate([np.asarray(vector, np.float32)[None], snapshots])


def steps_to_target(curve, steps, target: float) -> float | None:
    """The first step whose accuracy reaches ``target``; None if it never does."""
    hit = np.flatnonzero(np.asarray(curve) >= target)
    return float(np.asarray(steps)[hit[0]]) if hit.size else None


def init_curves(evaluator, zoo, model_def, dataset, *, generated: np.ndarray, key, n: int,
                steps: int, every: int, optimizer: str, lr: float, batch_size: int,
                momentum: float = 0.9, members=None, mesh=None) -> dict:
    """Train ``n`` networks from each starting point; returns {"steps": [S + 1],
    kind: {"test_acc": f32[n, S + 1] (percent)}} for every kind in ``INIT_KINDS``."""
    tail_inputs = compute_tail_inputs(model_def, zoo.base, dataset.x_train, zoo.split_point,
                                      mesh=mesh)
    out = {"steps": list(range(0, (steps // every) * every + 1, every))}
    for k, kind in enumerate(INIT_KINDS):
        starts = initial_vectors(kind, key=jax.random.fold_in(key, k), zoo=zoo,
                                 generated=generated, model_def=model_def, n=n,
                                 members=members)
        paths = [train_from(v, zoo=zoo, model_def=model_def, tail_inputs=tail_inputs,
                            labels=dataset.y_train, steps=steps, every=every,
                            optimizer=optimizer, lr=lr, batch_size=batch_size,
                            momentum=momentum, seed=1000 * k + i, mesh=mesh)
                 for i, v in enumerate(starts)]
        flat = np.concatenate(paths)                       # [n * (S + 1), D]
        acc, _ = evaluator.evaluate(flat, "test")
        out[kind] = {"test_acc": np.asarray(acc).reshape(n, -1).tolist()}
    return out


def run_stats(per_run, every: float) -> dict:
    """Spread of the per-run steps to target: mean / median / std (ddof 1) / min / max over
    the runs that reach it, their count, the indices of the runs that never do, and the mean
    with a start already at the target counted as one snapshot interval (``every``)."""
    reached = np.asarray([s for s in per_run if s is not None], float)
    stats = {"per_run": list(per_run), "reaching": int(reached.size), "n": len(per_run),
             "not_reaching": [i for i, s in enumerate(per_run) if s is None],
             "mean": None, "median": None, "std": None, "min": None, "max": None,
             "mean_floored": None}
    if reached.size:
        stats.update(mean=float(reached.mean()), median=float(np.median(reached)),
                     std=float(reached.std(ddof=1)) if reached.size > 1 else 0.0,
                     min=float(reached.min()), max=float(reached.max()),
                     mean_floored=float(np.maximum(reached, every).mean()))
    return stats


def summarize(curves: Mapping, target: float) -> dict:
    """Per kind: start / final accuracy (mean, std with ddof 1), steps to ``target`` of the
    mean curve and of each run (median, and ``run_stats``: mean / std / min / max / per-run
    list), and the speed-up of p-diff over random init and against a random member.

    A start already at the target counts as one snapshot interval, not zero, in both
    ratios (so they stay finite); a ratio is None when either side has a run that never
    reaches the target (its mean would hide that run)."""
    steps = curves["steps"]
    every = float(steps[1] - steps[0])
    table = {}
    for kind in INIT_KINDS:
        acc = np.asarray(curves[kind]["test_acc"])
        mean = acc.mean(0)
        runs = run_stats([steps_to_target(a, steps, target) for a in acc], every)
        ddof = 1 if len(acc) > 1 else 0
        table[kind] = {"start": float(mean[0]), "start_std": float(acc[:, 0].std(ddof=ddof)),
                       "final": float(mean[-1]), "final_std": float(acc[:, -1].std(ddof=ddof)),
                       "steps_mean_curve": steps_to_target(mean, steps, target),
                       "steps_median_run": runs["median"],
                       "runs_reaching": f"{runs['reaching']}/{runs['n']}",
                       "steps_to_target": runs}
    a, d = table["pdiff"]["steps_mean_curve"], table["random"]["steps_mean_curve"]
    speedup = None
    if a is not None and d is not None:
        # a start already at the target counts as one snapshot interval, not zero
        speedup = d / max(a, every)

    def ratio(slow: str, fast: str):
        s, f = table[slow]["steps_to_target"], table[fast]["steps_to_target"]
        if s["not_reaching"] or f["not_reaching"]:
            return None
        return s["mean_floored"] / f["mean_floored"]

    return {"target": target, "kinds": table, "speedup_pdiff_over_random": speedup,
            "speedup_pdiff_over_random_runs": ratio("random", "pdiff"),
            "member_over_pdiff_runs": ratio("zoo_member", "pdiff")}


def markdown(summary: Mapping, every: int) -> list[str]:
    """The steps-to-target table: mean curve, median run, and mean ± std [min, max] of
    the per-run steps (over the runs that reach the target)."""
    lines = [f"Target: {summary['target']:.2f} % test accuracy; steps counted in snapshots "
             f"of {every} (a start already at the target counts as {every} in the "
             "speed-ups).", "",
             "| start | acc. at step 0 (mean ± std) | final (mean ± std) "
             "| steps to target (mean curve) | steps to target per run: mean ± std [min, max] "
             "| runs reaching it |",
             "|---|---|---|---|---|---|"]
    fmt = lambda v: "never" if v is None else f"{v:.0f}"
    for kind in INIT_KINDS:
        s = summary["kinds"][kind]
        r = s["steps_to_target"]
        runs = ("never" if r["mean"] is None else
                f"{r['mean']:.1f} ± {r['std']:.1f} [{r['min']:.0f}, {r['max']:.0f}]")
        if r["not_reaching"]:
            runs += f" (never: runs {', '.join(map(str, r['not_reaching']))})"
        lines.append(f"| {LABELS[kind]} | {s['start']:.2f} ± {s['start_std']:.2f} | "
                     f"{s['final']:.2f} ± {s['final_std']:.2f} | "
                     f"{fmt(s['steps_mean_curve'])} | {runs} | {s['runs_reaching']} |")
    sp = summary["speedup_pdiff_over_random"]
    lines += ["", "Speed-up of (a) over (d), steps to target of the mean curves: "
              + ("not defined (one never reaches the target)" if sp is None else
                 f"**{sp:.1f}x**")]
    ratios = (("speedup_pdiff_over_random_runs", "Speed-up of (a) over (d), mean per-run "
               "steps"), ("member_over_pdiff_runs", "(c) / (a), mean per-run steps "
                          "(>= 1: p-diff no slower than a random member)"))
    for name, text in ratios:
        v = summary[name]
        lines.append(f"{text}: " + ("not defined (a run never reaches the target)"
                                    if v is None else f"**{v:.2f}x**"))
    lines.append("")
    return lines


def plot_curves(path, curves: Mapping, *, target: float | None = None,
                title: str = "Training from each initialization") -> Path:
    """Mean test accuracy vs step for the four starting points (band: min..max)."""
    from pdiff_jax.evaluation import plots

    plt = plots.plt
    steps = np.asarray(curves["steps"])
    colors = {"pdiff": plots._GEN, "zoo_mean": "tab:purple", "zoo_member": plots._ORIG,
              "random": plots._NOISE}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for kind in INIT_KINDS:
        acc = np.asarray(curves[kind]["test_acc"])
        ax.plot(steps, acc.mean(0), color=colors[kind], lw=1.8, label=LABELS[kind])
        ax.fill_between(steps, acc.min(0), acc.max(0), color=colors[kind], alpha=0.15, lw=0)
    if target is not None:
        ax.axhline(target, ls="--", lw=1, color="k", label=f"target {target:.2f}")
    finals = np.concatenate([np.asarray(curves[k]["test_acc"])[:, -1] for k in INIT_KINDS])
    ax.set_ylim(max(0.0, float(np.min(finals)) - 15), 100.5)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return plots._save(fig, path)
