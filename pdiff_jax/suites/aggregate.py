"""One table, one JSON and one plot per factor from the runs of a suite.

Reads every run's ``results.json`` (``pdiff_jax.report.build_results``), its
``metrics.jsonl`` stage timings and the runner's record of its peak memory
(``suite_runner``), and writes into the suite directory:

  suite.md              one row per run (unfinished runs shown with their state)
  suite.json            the same rows, machine-readable, plus the factors
  plot_<factor>.png     accuracy and nearest-neighbour IoU against the factor,
                        p-diff next to the zoo and the memorization baselines

Accuracies are test accuracies in percent; "best" is the member with the best
TRAINING accuracy (``pdiff_jax.protocol``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pdiff_jax import artifacts
from pdiff_jax.suites import catalog as suites
from pdiff_jax.suites import runner as suite_runner

SUITE_MD, SUITE_JSON = artifacts.SUITE_MD, artifacts.SUITE_JSON


# ----------------------------------------------------------------------------- reading


def run_metrics(results: Mapping) -> dict:
    """The suite's numbers of one run from its results dict (see ``report.build_results``)."""
    meta = results.get("meta", {}) or {}
    pdiff = results.get("pdiff", {})
    novelty = results.get("novelty", {})
    row = {
        "K": meta.get("K"), "D": meta.get("D"),
        "original": results.get("original", {}).get("best"),
        "ensemble": results.get("ensemble", {}).get("acc"),
        "pdiff_best": pdiff.get("best"), "pdiff_avg": pdiff.get("avg"),
        "pdiff_median": pdiff.get("median"),
        "nn_max_iou": pdiff.get("novelty", {}).get("max_iou_gen_mean"),
        "nn_max_iou_zoo": novelty.get("max_iou_orig_mean"),
        "nn_l2": pdiff.get("novelty", {}).get("nn_l2_gen_mean"),
        "nn_l2_zoo": novelty.get("nn_l2_orig_mean"),
        "baselines": {name: {"best": b.get("best"), "avg": b.get("avg"),
                             "median": b.get("median"),
                             "nn_max_iou": b.get("novelty", {}).get("max_iou_gen_mean"),
                             "nn_l2": b.get("novelty", {}).get("nn_l2_gen_mean")}
                      for name, b in results.get("baselines", {}).items()},
    }
    return row


def collect_rows(suite_dir, runs: Mapping[str, Mapping],
                 expected_configs: Mapping[str, Mapping] | None = None) -> list[dict]:
    """One dict per run, in suite order: name, overrides, state, log, error, numbers."""
    rows = []
    for name, overrides in runs.items():
        workdir = Path(suite_dir) / name
        expected = (expected_configs or {}).get(name)
        row = {"run": name, "overrides": dict(overrides), "workdir": str(workdir)}
        row.update(suite_runner.run_state(workdir, expected))
        status = suite_runner.read_status(workdir)
        rss = [a.get("max_rss_mb") for a in status.get("attempts", []) if a.get("max_rss_mb")]
        row["peak_rss_mb"] = max(rss) if rss else None
        row["run_s"] = round(sum(a.get("wall_s") or 0 for a in status.get("attempts", [])),
                             1) or None
        if row["state"] == "finished":
            results = json.loads((workdir / artifacts.RESULTS_JSON).read_text())
            row.update(run_metrics(results))
            # Every finished stage's own time, read from its artifact by the report stage.
            seconds = results.get("meta", {}).get("timings_s", {})
            row["stage_s"] = {k: round(v, 1) for k, v in seconds.items()}
            row["ae_s"] = row["stage_s"].get("autoencoder")
            row["diffusion_s"] = row["stage_s"].get("diffusion")
        rows.append(row)
    return rows


def baseline_names(rows: Sequence[Mapping]) -> list[str]:
    """Every memorization baseline any finished run has, in first-seen order."""
    names: list[str] = []
    for row in rows:
        for name in row.get("baselines", {}):
            if name not in names:
                names.append(name)
    return names


# ----------------------------------------------------------------------------- table


def _f(x, fmt: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, fmt)


def _cell(text) -> str:
    return str(text).replace("|", "\\|")   # regexes in overrides must not split the cell


def _changes(overrides: Mapping) -> str:
    if not overrides:
        return "(base config)"
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in overrides.items())


def table_lines(rows: Sequence[Mapping]) -> list[str]:
    """The suite table in markdown: one row per run."""
    base = baseline_names(rows)
    header = (["run", "changes", "state", "K", "D", "original", "ensemble", "p-diff best",
               "p-diff avg.", "p-diff med."] + [f"{b} best" for b in base]
              + ["NN max IoU (zoo)", "NN L2 (zoo)", "AE s", "diffusion s", "run s",
                 "peak RSS MB"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["run"], _changes(r["overrides"]), r["state"]]
        if r["state"] == "finished":
            cells += [_f(r.get("K"), "d"), _f(r.get("D"), "d"), _f(r.get("original")),
                      _f(r.get("ensemble")), _f(r.get("pdiff_best")), _f(r.get("pdiff_avg")),
                      _f(r.get("pdiff_median"))]
            cells += [_f(r["baselines"].get(b, {}).get("best")) for b in base]
            cells += [f"{_f(r.get('nn_max_iou'), '.3f')} ({_f(r.get('nn_max_iou_zoo'), '.3f')})",
                      f"{_f(r.get('nn_l2'), '.4g')} ({_f(r.get('nn_l2_zoo'), '.4g')})",
                      _f(r.get("ae_s"), ".0f"), _f(r.get("diffusion_s"), ".0f")]
        else:
            cells += ["-"] * (7 + len(base) + 4)
        cells += [_f(r.get("run_s"), ".0f"), _f(r.get("peak_rss_mb"), ".0f")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


NOTES = """\
- Accuracies: test accuracy in percent. **original**: best zoo model (chosen on the test
  set, as the paper). **ensemble**: the uniform weight average of the zoo. **p-diff best**
  and every baseline's **best**: the member with the best *training* accuracy; avg. / med.
  over all generated members.
- Memorization baselines (Zeng et al. 2025): `noise_a` a zoo member plus noise of a times
  each tensor's RMS; `average_k` the mean of k random zoo members; `gaussian` a
  per-coordinate Gaussian fitted to the zoo.
- **NN max IoU**: mean over generated models of their highest wrong-prediction IoU with any
  zoo model (in parentheses: the same for zoo models against the rest of the zoo); p-diff
  values at or above the zoo's own point to memorization. **NN L2**: distance to the
  closest zoo vector (zoo to zoo in parentheses).
- **AE s / diffusion s**: training time of those stages (summed over resumed
  invocations); **run s**: wall time of the run's processes started by the suite runner;
  **peak RSS MB**: the largest resident memory of any of them (`wait4` rusage; host
  memory, not accelerator memory)."""


def markdown(rows: Sequence[Mapping], *, title: str, plots: Mapping[str, str]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines = [f"# {title}", "", f"{len(rows)} runs: " + ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items())) + ".", ""]
    lines += table_lines(rows)
    failed = [r for r in rows if r["state"] in ("failed", "stale", "interrupted")]
    if failed:
        lines += ["", "## Runs that did not finish", ""]
        lines += [f"- `{r['run']}` ({r['state']}): {r['error'] or '-'}; log `{r['log']}`"
                  for r in failed]
    if plots:
        lines += ["", "## Plots", ""]
        for label, path in plots.items():
            lines += [f"![{label}]({path})", ""]
    lines += ["", "## How to read it", "", NOTES]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_factor(path, label: str, rows: Sequence[Mapping], x_values: Sequence) -> Path:
    """Accuracy (left) and NN max IoU (right) of finished ``rows`` against one factor.

    ``x_values``: the factor's value in each row (numbers give a numeric axis, log
    when they span >= 20x; anything else a categorical axis labelled by run name).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = _numeric(x_values)
    order = sorted(range(len(rows)), key=lambda i: x_values[i]) if numeric \
        else list(range(len(rows)))
    rows = [rows[i] for i in order]
    xs = [x_values[i] for i in order] if numeric else list(range(len(rows)))
    base = baseline_names(rows)
    fig, (acc_ax, iou_ax) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("tab10")

    def series(ax, values, **kw):
        ax.plot(xs, [math.nan if v is None else v for v in values], marker="o", **kw)

    series(acc_ax, [r.get("pdiff_best") for r in rows], label="p-diff best", color="tab:orange",
           lw=2)
    series(acc_ax, [r.get("pdiff_median") for r in rows], label="p-diff median",
           color="tab:orange", ls=":")
    series(acc_ax, [r.get("original") for r in rows], label="original (best)", color="tab:blue")
    series(acc_ax, [r.get("ensemble") for r in rows], label="ensemble", color="tab:cyan")
    series(iou_ax, [r.get("nn_max_iou") for r in rows], label="p-diff", color="tab:orange",
           lw=2)
    series(iou_ax, [r.get("nn_max_iou_zoo") for r in rows], label="zoo (to rest of zoo)",
           color="tab:blue")
    for i, b in enumerate(base):
        color = cmap(2 + i % 8)
        series(acc_ax, [r["baselines"].get(b, {}).get("best") for r in rows], label=b,
               color=color, ls="--", alpha=0.8)
        series(iou_ax, [r["baselines"].get(b, {}).get("nn_max_iou") for r in rows], label=b,
               color=color, ls="--", alpha=0.8)
    for ax, ylabel in ((acc_ax, "test accuracy (%)"), (iou_ax, "NN max IoU with the zoo")):
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if numeric:
            positive = [x for x in xs if x > 0]
            if len(positive) == len(xs) and max(xs) >= 20 * min(xs):
                ax.set_xscale("log")
            ax.set_xticks(xs, [str(x) for x in xs])
        else:
            ax.set_xticks(xs, [r["run"] for r in rows], rotation=30, ha="right")
    acc_ax.set_title("accuracy")
    iou_ax.set_title("novelty (lower = less like the zoo)")
    acc_ax.legend(fontsize=7, loc="best")
    iou_ax.legend(fontsize=7, loc="best")
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_factors(suite_dir, rows: Sequence[Mapping], runs: Mapping[str, Mapping],
                 values: Mapping[str, Mapping] | None = None) -> dict[str, str]:
    """One PNG per factor with >= 2 finished runs; returns ``{label: file name}``.

    ``values``: ``{run: {dotted key: value}}``, each run's resolved value of every swept
    key (the reference run's come from the base config); without it the overrides.
    """
    by_name = {r["run"]: r for r in rows}
    keys = suites.factor_keys(runs)
    out = {}
    for label, names in suites.factors(runs).items():
        done = [n for n in names if by_name[n]["state"] == "finished"]
        if len(done) < 2:
            continue
        factor_keys = keys[label]
        xs = []
        for n in done:
            v = (values or {}).get(n, {})
            v = {**v, **runs[n]}
            x = [v.get(k) for k in factor_keys]
            xs.append(x[0] if len(x) == 1 else tuple(x))
        if not _numeric(xs):
            xs = [n for n in done]   # categorical: one position per run
        name = artifacts.suite_plot_name(label)
        plot_factor(Path(suite_dir) / name, label, [by_name[n] for n in done], xs)
        out[label] = name
    return out


# ----------------------------------------------------------------------------- entry


def aggregate_suite(suite_dir, runs: Mapping[str, Mapping], *, title: str = "",
                    values: Mapping[str, Mapping] | None = None,
                    expected_configs: Mapping[str, Mapping] | None = None,
                    plots: bool = True) -> dict:
    """Write suite.md, suite.json and the factor plots into ``suite_dir``; return suite.json.

    Args:
      suite_dir: the parent of the runs' workdirs (``ROOT/SUITE``).
      runs: ``{run name: {dotted key: value}}`` (the suite).
      title: the heading of suite.md.
      values: each run's resolved values of the swept keys (for the plots' x axes).
      expected_configs: each run's full config as a dict; a workdir holding another
        config is shown as 'stale' instead of being read.
    """
    suite_dir = Path(suite_dir)
    suite_dir.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(suite_dir, runs, expected_configs)
    pictures = plot_factors(suite_dir, rows, runs, values) if plots else {}
    title = title or f"Suite {suite_dir.name}"
    (suite_dir / SUITE_MD).write_text(markdown(rows, title=title, plots=pictures))
    summary = {"title": title, "suite_dir": str(suite_dir),
               "written": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "factors": suites.factors(runs), "plots": pictures, "runs": rows}
    (suite_dir / SUITE_JSON).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary
