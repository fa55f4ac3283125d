"""The report of an accuracy-conditioned run (paper Tab. 6): did each level get what it
asked for?

For every requested level (an accuracy range [low, high) in percent) three groups are
set side by side, all measured by the run's evaluator:

- **generated**: the models sampled with that level's condition;
- **zoo**: the zoo members whose accuracy (``condition.on``) lies in the range;
- **noise**: those members plus Gaussian noise (the memorization baseline of
  ``baselines.noisy_zoo``, at the run's largest noise amplitude).

For each: best (test accuracy of the member with the best TRAINING accuracy), avg,
median, and the fraction of models whose test accuracy lies inside the range. The
done-when criterion of the feature reads from it: median inside, >= 80 % inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from pdiff_jax import artifacts
from pdiff_jax.evaluation import baselines, protocol
from pdiff_jax.evaluation.report import append_section

TARGET_FRACTION = 0.8   # the share of a level's samples that should land in its range


def inside(test_acc, low: float, high: float, last: bool) -> np.ndarray:
    """bool[n]: accuracy in [low, high) (the last range includes ``high``)."""
    acc = np.asarray(test_acc, np.float64)
    return (acc >= low) & ((acc <= high) if last else (acc < high))


def level_summary(train_acc, test_acc, low: float, high: float, last: bool) -> dict:
    """best / avg / median / fraction inside of one group for one range; {} if empty."""
    test = np.asarray(test_acc, np.float64).reshape(-1)
    if test.size == 0:
        return {"n": 0}
    s = protocol.summarize(train_acc, test)
    return {k: s[k] for k in ("best", "avg", "median", "std", "worst", "n")} | {
        "fraction_inside": float(inside(test, low, high, last).mean()),
        "median_inside": bool(inside(np.median(test), low, high, last)),
        # how far the median is from the range (0 inside): the honest miss distance
        "median_miss": float(max(low - np.median(test), np.median(test) - high, 0.0))}


def evaluate_levels(evaluator, zoo, generated: Mapping, condition_level, condition: Mapping,
                    *, key, noise_amplitude: float = 0.1, n_noise: int = 100) -> dict:
    """Per requested level, generated vs zoo members of the level vs noise baseline.

    ``generated``: {"train_acc", "test_acc"} f32[n_total] of the sampled models;
    ``condition_level`` i32[n_total]: the level each asked for; ``condition``: the
    ``generator.condition`` settings the generator was trained with.
    Returns {"kind", "on", "guidance_scale", "levels": [per-level dict]}: each level
    holds its range, the three summaries, and the raw test accuracies (for the plot).
    """
    from pdiff_jax.generator.conditioning import ConditionSettings

    cond = ConditionSettings(**{k: condition[k] for k in
                                ("kind", "levels", "on", "dropout", "guidance_scale")})
    zoo_acc = {"train": np.asarray(zoo.train_acc), "test": np.asarray(zoo.test_acc)}
    member_level = cond.level_of(zoo_acc[cond.on])
    requested = np.asarray(condition_level)
    levels = []
    for i, (low, high) in enumerate(cond.ranges()):
        last = i == cond.num_levels - 1
        rows = requested == i
        members = np.flatnonzero(member_level == i)
        entry = {"level": i, "range": [low, high], "members": int(members.size),
                 "generated": level_summary(generated["train_acc"][rows],
                                            generated["test_acc"][rows], low, high, last),
                 "generated_test_acc": np.asarray(generated["test_acc"][rows]).tolist(),
                 "zoo": level_summary(zoo_acc["train"][members], zoo_acc["test"][members],
                                      low, high, last),
                 "zoo_test_acc": zoo_acc["test"][members].tolist()}
        if members.size:
            noisy = baselines.noisy_zoo(jax.random.fold_in(key, i), zoo.vectors[members],
                                        noise_amplitude, n=n_noise,
                                        segments=zoo.segments)
            tr, _ = evaluator.evaluate(np.asarray(noisy), "train")
            te, _ = evaluator.evaluate(np.asarray(noisy), "test")
            entry["noise"] = level_summary(tr, te, low, high, last)
            entry["noise_test_acc"] = np.asarray(te).tolist()
        levels.append(entry)
    met = all(lv["generated"].get("median_inside") and
              lv["generated"].get("fraction_inside", 0) >= TARGET_FRACTION for lv in levels)
    return {"kind": cond.kind, "on": cond.on, "guidance_scale": cond.guidance_scale,
            "noise_amplitude": noise_amplitude, "target_fraction": TARGET_FRACTION,
            "all_levels_met": bool(met), "levels": levels}


# ----------------------------------------------------------------------------- report


def _f(x, fmt=".2f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(conditional: Mapping) -> list[str]:
    """The report.md section: one row per level and group."""
    lines = ["## Accuracy-conditioned generation (paper Tab. 6)", "",
             f"Condition: {conditional['kind']} (members labelled by {conditional['on']} "
             f"accuracy), guidance scale {conditional['guidance_scale']:g}. Per requested "
             "level: best (by training accuracy) / avg / median test accuracy and the "
             "fraction of models inside the level's range. Noise: that level's zoo members "
             f"+ noise {conditional['noise_amplitude']:g}.", "",
             "| level | range (%) | group | n | best | avg | median | inside range |",
             "|---|---|---|---|---|---|---|---|"]
    for lv in conditional["levels"]:
        low, high = lv["range"]
        for group in ("generated", "zoo", "noise"):
            s = lv.get(group) or {"n": 0}
            frac = s.get("fraction_inside")
            lines.append(f"| {lv['level']} | {low:g}-{high:g} | {group} | {s['n']} | "
                         f"{_f(s.get('best'))} | {_f(s.get('avg'))} | {_f(s.get('median'))} | "
                         f"{'-' if frac is None else f'{100 * frac:.0f} %'} |")
    verdict = "met" if conditional["all_levels_met"] else "NOT met"
    lines += ["", f"Every level's median inside its range and >= "
              f"{100 * conditional['target_fraction']:.0f} % of its samples inside: "
              f"**{verdict}**.", ""]
    return lines


def plot_levels(path, conditional: Mapping) -> Path:
    """Per level: generated / zoo / noise test accuracies, the requested range shaded."""
    from pdiff_jax.evaluation import plots

    plt = plots.plt
    levels = conditional["levels"]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.4 * len(levels)), 4.4))
    rng = np.random.default_rng(0)   # jitter only
    groups = (("generated", plots._GEN), ("zoo", plots._ORIG), ("noise", plots._NOISE))
    for i, lv in enumerate(levels):
        low, high = lv["range"]
        ax.fill_between([i - 0.45, i + 0.45], low, high, color="tab:green", alpha=0.12,
                        lw=0)
        for j, (name, color) in enumerate(groups):
            acc = np.asarray(lv.get(f"{name}_test_acc", []), float)
            if acc.size == 0:
                continue
            x = i + (j - 1) * 0.28 + rng.uniform(-0.08, 0.08, acc.size)
            ax.scatter(x, acc, s=8, alpha=0.55, color=color, zorder=3,
                       label=name if i == 0 else None)
            ax.plot([i + (j - 1) * 0.28 - 0.1, i + (j - 1) * 0.28 + 0.1],
                    [np.median(acc)] * 2, color="k", lw=1.5, zorder=4)
    ax.set_xticks(np.arange(len(levels)))
    ax.set_xticklabels([f"level {lv['level']}\n{lv['range'][0]:g}-{lv['range'][1]:g} %"
                        for lv in levels])
    lo = min(lv["range"][0] for lv in levels)
    ax.set_ylim(max(0.0, lo - 10), min(100.0, max(lv["range"][1] for lv in levels) + 2))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Requested accuracy level (shaded) vs what was generated")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return plots._save(fig, path)


def summary_text(conditional: Mapping) -> str:
    """One line per level for the printed summary."""
    out = [f"conditional ({conditional['kind']}, guidance {conditional['guidance_scale']:g}): "
           f"median inside and >= {100 * conditional['target_fraction']:.0f} % inside: "
           f"{'met' if conditional['all_levels_met'] else 'NOT met'}"]
    for lv in conditional["levels"]:
        g = lv["generated"]
        if g.get("n"):
            out.append(f"  level {lv['level']} {lv['range'][0]:g}-{lv['range'][1]:g}%: "
                       f"median {g['median']:.2f}, {100 * g['fraction_inside']:.0f} % inside "
                       f"(zoo median {lv['zoo'].get('median', float('nan')):.2f})")
    return "\n".join(out)


def append_to_report(results: Mapping, workdir) -> Path | None:
    """Add the conditional section and its plot to ``workdir/report.md`` (if conditional)."""
    conditional = results.get("conditional")
    if not conditional:
        return None
    workdir = Path(workdir)
    picture = plot_levels(workdir / artifacts.CONDITIONAL_LEVELS_PNG, conditional)
    return append_section(workdir, [*markdown(conditional),
                                    f"![conditional levels]({picture.relative_to(workdir)})",
                                    ""])
