"""The frontier in report.md: one figure (a curve per family, p-diff's points on it), one
table per family, the margins, and a few lines for the printed summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pdiff_jax import artifacts
from pdiff_jax.evaluation.report import append_section

COLUMNS = ("knob", "n", "median", "best", "nn_iou_any", "nn_max_iou", "nn_iou_within", "nn_l2")
KNOB_NAMES = {"noise": "amplitude", "interpolation": "a", "dirichlet": "k members",
              "pca_gaussian": "scale s", "finetune": "steps"}
_FAMILY_COLORS = {"noise": "tab:gray", "interpolation": "tab:green", "dirichlet": "tab:olive",
                  "pca_gaussian": "tab:purple", "finetune": "tab:brown"}


_KNOB_SYMBOLS = {"temperature": "T", "guidance": "s", "latent_mix": "a"}
FOCUS_BELOW = 3.0   # points of accuracy shown below p-diff's and the zoo's lowest median


def focus_range(frontier: Mapping) -> tuple[float, float] | None:
    """The y-range that shows where p-diff competes, or None when every point fits in it.

    A family whose far knobs break the networks (a wide principal-space Gaussian at 20 %)
    would otherwise squash the whole comparison into a few pixels at the top."""
    near = [p["median"] for p in frontier["pdiff"]]
    if frontier.get("zoo"):
        near.append(frontier["zoo"]["median"])
    if not near:
        return None
    every = near + [p["median"] for pts in frontier["families"].values() for p in pts]
    bottom = min(near) - FOCUS_BELOW
    return None if min(every) >= bottom else (bottom, max(every) + 0.5)


def plot_frontier(path, frontier: Mapping) -> Path:
    """Median test accuracy against ``nn_iou_any`` (novelty grows to the right)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    for family, points in frontier["families"].items():
        pts = sorted(points, key=lambda p: p["nn_iou_any"])
        ax.plot([p["nn_iou_any"] for p in pts], [p["median"] for p in pts], "o-", ms=4,
                color=_FAMILY_COLORS.get(family), label=family)
        for p in pts:
            ax.annotate(f"{p['knob']:g}", (p["nn_iou_any"], p["median"]), fontsize=6,
                        xytext=(2, 2), textcoords="offset points")
    pdiff = sorted(frontier["pdiff"], key=lambda p: p["nn_iou_any"])
    knob = frontier.get("pdiff_knob", "temperature")
    ax.plot([p["nn_iou_any"] for p in pdiff], [p["median"] for p in pdiff], "*-", ms=11,
            color="tab:orange", label=f"p-diff ({knob})")
    for p in pdiff:
        ax.annotate(f"{_KNOB_SYMBOLS.get(knob, knob)}={p['knob']:g}",
                    (p["nn_iou_any"], p["median"]), fontsize=7,
                    xytext=(3, -9), textcoords="offset points", color="tab:orange")
    zoo = frontier.get("zoo")
    if zoo and zoo.get("nn_iou_any") is not None:
        ax.scatter([zoo["nn_iou_any"]], [zoo["median"]], marker="s", s=50, color="tab:blue",
                   zorder=4, label="zoo members (vs each other)")
    ax.invert_xaxis()
    ax.set_xlabel("nn_iou_any: max IoU of wrong predictions with any member or other sample"
                  " (right = more novel)", fontsize=8)
    ax.set_ylabel("median test accuracy (%)")
    focus = focus_range(frontier)
    if focus is not None:
        ax.set_ylim(*focus)
        ax.text(0.01, 0.01, f"points below {focus[0]:.1f} % are off the axis (see the table)",
                transform=ax.transAxes, fontsize=7, color="0.4")
    ax.set_title(f"Accuracy-novelty frontier (n = {pdiff[0]['n'] if pdiff else '-'} per point)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 2 else f"{v:.2f}"
    return str(v)


def markdown(frontier: Mapping, picture: str | None = None) -> list[str]:
    """The report.md section."""
    lines = ["", "## Accuracy-novelty frontier", "",
             "Every point: n draws, measured by the run's evaluator; median and best (chosen "
             "by training accuracy) test accuracy %. `nn_iou_any`: each sample's largest IoU "
             "of wrong predictions with any zoo member or any other sample of its group, "
             "averaged (lower = more novel); `nn_max_iou`: the zoo-only part; "
             "`nn_iou_within`: the within-group part; `nn_l2`: distance to the nearest "
             "member. Fine-tuning spends training, so it may use fewer members "
             "(`evaluate.frontier.finetune_members`; its n is in its table): compare its "
             "median, not its best. A margin's interval: 90 % of its values when every "
             "point's draws are resampled (bootstrap); a margin whose interval holds 0 is "
             "no lead.", ""]
    if picture:
        lines += [f"![frontier]({picture})", ""]
    zoo = frontier.get("zoo") or {}
    if zoo:
        lines += [f"Zoo members against each other: median {_cell(zoo.get('median'))}, "
                  f"nn_iou_any {_cell(zoo.get('nn_iou_any'))} (K = {zoo.get('n')}).", ""]
    lines += [f"| margin of p-diff's best point over | points | 90 % interval (bootstrap) "
              f"| p-diff {frontier.get('pdiff_knob', 'temperature')} | note |",
              "|---|---|---|---|---|"]
    for family, reason in frontier.get("failed", {}).items():
        lines.append(f"| {family} | - | - | - | left out: {reason} |")
    for family, value in frontier.get("margin", {}).items():
        note = frontier.get("margin_notes", {}).get(family, {})
        lines.append(f"| {family} | {'-' if value is None else f'{value:+.2f}'} | "
                     f"{interval_text(frontier, family)} | "
                     f"{_cell(note.get('pdiff_knob'))} | {note.get('reason') or ''} |")
    for family, points in [*frontier["families"].items(), ("pdiff", frontier["pdiff"])]:
        knob = (frontier.get("pdiff_knob", "temperature") if family == "pdiff"
                else KNOB_NAMES.get(family, "knob"))
        lines += ["", f"**{family}** (knob: {knob})", "",
                  "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_cell(p.get(c)) for c in COLUMNS) + " |" for p in points]
    return lines


def append_to_report(results: Mapping, workdir) -> Path | None:
    """Add the frontier's figure and tables to ``workdir/report.md`` (if it was computed)."""
    frontier = results.get("frontier")
    if not frontier:
        return None
    workdir = Path(workdir)
    picture = plot_frontier(workdir / artifacts.FRONTIER_PNG, frontier)
    return append_section(workdir, [*markdown(frontier, str(picture.relative_to(workdir))), ""])


def interval_text(frontier: Mapping, family: str) -> str:
    """``[+0.21, +0.75]``: a margin's bootstrap interval; '-' where there is none (an older
    results.json, or p-diff outside the family's range)."""
    interval = frontier.get("margin_interval", {}).get(family)
    return "-" if interval is None else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def summary_text(frontier: Mapping) -> str:
    """Two lines for the printed summary: p-diff's margins over each family."""
    parts = [f"{f} {'-' if v is None else f'{v:+.2f}'}"
             + ("" if (i := interval_text(frontier, f)) == "-" else f" {i}")
             for f, v in frontier.get("margin", {}).items()]
    return ("frontier margins (p-diff median minus family median at equal nn_iou_any; "
            "90 % bootstrap interval): " + ("; ".join(parts) or "none"))
