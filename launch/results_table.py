"""README's and BENCHMARKS' results tables, written from the committed records only.

    python launch/results_table.py           # rewrite the tables in place
    python launch/results_table.py --check   # exit 1 when a table and its records disagree

A record (``results/records/NAME.json``, made by ``launch/make_record.py``) holds what
one published run measured, with its command, revision, machine and load. Each table
lives between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in its document and is
nothing but a rendering of the records, so a published number without a record cannot
appear there, and a hand edit is caught by ``--check`` (``tests/test_results_table.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = Path("results") / "records"
STAGES = ("collect", "autoencoder", "diffusion", "sample", "evaluate", "report")
NOTE = "<!-- written by `python launch/results_table.py` from results/records/: edit those -->"


# ----------------------------------------------------------------------------- formatting


def pct(x: float) -> str:
    return f"{x:.2f}"


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def run_seconds(record: dict) -> tuple[float, str]:
    """The run's wall time if it was measured, else the sum of its stage timings."""
    if record.get("wall_s") is not None:
        return record["wall_s"], "wall"
    return sum(record["timings_s"].values()), "sum of the stages"


def link(record: dict, doc: Path) -> str:
    target = os.path.relpath(RECORDS / f"{record['name']}.json", doc.parent)
    return f"[`{record['name']}`]({target})"


def describe(record: dict) -> str:
    """What the run generated, from its own results and config."""
    meta, zoo = record["results"]["meta"], record["config"]["zoo"]
    what = "subset of" if meta["mode"] == "subset" else "whole"
    out = f"{what} `{meta['arch']}`, D = {meta['D']:,}, K = {meta['K']}"
    if zoo.get("align", "none") != "none":
        out += f", zoo aligned ({zoo['align']})"
    if meta.get("batch_stats", "as stored") != "as stored":
        out += ", BatchNorm statistics recomputed"
    return out


def provenance(record: dict, doc: Path) -> str:
    """One line: the command, the code, the machine and the load of one record."""
    m, seconds = record["machine"], run_seconds(record)
    load = record["load"]["1_5_15_min"]
    after = record["load"]["seconds_after_run"]
    when = "at its end" if after < 60 else f"{duration(after)} after its end"
    timings = record["timings_s"]
    order = sorted(timings, key=lambda k: (STAGES.index(k) if k in STAGES else len(STAGES), k))
    stages = ", ".join(f"{k} {duration(timings[k])}" for k in order)
    return (f"- {link(record, doc)}: `{record['command']}` at revision {record['revision']}, "
            f"finished {record['finished'].replace('T', ' ').rstrip('Z')} UTC; "
            f"{duration(seconds[0])} ({seconds[1]}; {stages}); load {load[0]:.1f} / "
            f"{load[1]:.1f} / {load[2]:.1f} {when}; {m['cpu']}, {m['cores']} cores, "
            f"{m['backend']}, jax {m['jax']}")


# ----------------------------------------------------------------------------- tables


def baseline(record: dict, name: str, field: str = "avg") -> float | None:
    return record["results"]["baselines"].get(name, {}).get(field)


def cell(x: float | None, fmt=pct) -> str:
    return "-" if x is None else fmt(x)


def readme_table(records: list[dict], doc: Path) -> list[str]:
    """The README's "Results on this CPU" table, one row per record, then each row's
    command, revision, machine and load."""
    lines = [NOTE,
             "| run (record): what is generated | original: best by test / best by train / "
             "median | ensemble (weight average) | p-diff best (by train) / avg / median | "
             "average of 16 (avg) | Gaussian fit (avg) | nearest zoo member, L2: p-diff / "
             "members / member + 10 % noise |",
             "|---|---|---|---|---|---|---|"]
    for rec in records:
        r = rec["results"]
        o, p, nov = r["original"], r["pdiff"], r["novelty"]
        l2 = lambda x: f"{x:.3g}"
        lines.append(
            f"| {link(rec, doc)}: {describe(rec)} "
            f"| {pct(o['best'])} / {pct(o['best_by_train'])} / {pct(o['median'])} "
            f"| {pct(r['ensemble']['acc'])} "
            f"| {pct(p['best'])} / {pct(p['avg'])} / {pct(p['median'])} "
            f"| {cell(baseline(rec, 'average_16'))} | {cell(baseline(rec, 'gaussian'))} "
            f"| {l2(nov['nn_l2_gen_mean'])} / {l2(nov['nn_l2_orig_mean'])} / "
            f"{cell(baseline(rec, 'noise_0.1', 'nn_l2_gen_mean'), l2)} |")
    lines += ["", "Commands (each record has the whole config and results):", ""]
    lines += [provenance(rec, doc) for rec in records]
    return lines


MARGIN_FAMILIES = ("noise", "interpolation", "pca_gaussian")   # the targets
FAMILY_ORDER = ("noise", "interpolation", "pca_gaussian", "dirichlet", "finetune")


def frontier_point(q: dict, knob_name: str = "") -> str:
    return f"{pct(q['median'])} at {q['nn_iou_any']:.3f} ({knob_name}{q['knob']:g})"


def margin_cell(frontier: dict, family: str) -> str:
    """``+0.48 [+0.21, +0.75]``: a margin and its 90 % bootstrap interval (records made
    before the intervals show the margin alone)."""
    value = frontier["margin"].get(family)
    if value is None:
        return "-"
    interval = frontier.get("margin_interval", {}).get(family)
    return f"{value:+.2f}" + ("" if interval is None
                              else f" [{interval[0]:+.2f}, {interval[1]:+.2f}]")


def frontier_table(records: list[dict], doc: Path) -> list[str]:
    """The accuracy-novelty frontier of every record that has one: p-diff's best point
    (largest margin), each family's strongest point (highest median) and the margins."""
    lines = [NOTE,
             "| run (record) | zoo members: median at nn_iou_any | p-diff: median at "
             "nn_iou_any (knob), best margin's point | "
             + " | ".join(f"{f}: strongest point" for f in FAMILY_ORDER)
             + " | margin [90 % interval]: " + " / ".join(MARGIN_FAMILIES) + " |",
             "|" + "---|" * (4 + len(FAMILY_ORDER))]
    for rec in records:
        f = rec["results"].get("frontier")
        if not f:
            continue
        knobs = [n["pdiff_knob"] for n in f["margin_notes"].values() if n.get("pdiff_knob")
                 is not None]
        best = next((q for q in f["pdiff"] if knobs and q["knob"] == knobs[0]),
                    max(f["pdiff"], key=lambda q: q["median"]))
        prefix = "T=" if f["pdiff_knob"] == "temperature" else "s="
        cells = [frontier_point(max(f["families"][fam], key=lambda q: q["median"]))
                 if f["families"].get(fam) else "-" for fam in FAMILY_ORDER]
        margins = " / ".join(margin_cell(f, m) for m in MARGIN_FAMILIES)
        lines.append(f"| {link(rec, doc)} | {pct(f['zoo']['median'])} at "
                     f"{f['zoo']['nn_iou_any']:.3f} | {frontier_point(best, prefix)} | "
                     + " | ".join(cells) + f" | {margins} |")
    return lines


def _value(record: dict, path: str) -> float:
    node = record["results"]
    for part in path.split("."):
        node = node[part]
    return node


# (record, target (issue), what is measured): "a>=b+m" compares two results fields,
# "time<=s" the run's time. A target whose record is absent is left out.
TARGETS = (
    ("default", "default config end to end <= 5 min", ("time", 300)),
    ("default", "p-diff best (by train) >= original best (by test) - 0.1",
     ("pdiff.best", "original.best", -0.1)),
    ("default", "p-diff median >= original median - 1", ("pdiff.median", "original.median", -1)),
    ("mlp3", "MLP-3 whole networks, K = 200 (17): p-diff median >= originals' median - 1",
     ("pdiff.median", "original.median", -1)),
    ("mlp3", "MLP-3 (17): p-diff best >= originals' best by train - 0.3",
     ("pdiff.best", "original.best_by_train", -0.3)),
    ("mlp3", "MLP-3 whole run, collect to report <= 10 min (17; with the frontier: 24)",
     ("time", 600)),
    *((name, f"{name}: frontier margin vs {family} >= +0.3 (24)",
       (f"frontier.margin.{family}", None, 0.3))
      for name in ("default", "mlp3") for family in MARGIN_FAMILIES),
)


def target_row(record: dict, doc: Path, target: str, how: tuple) -> str:
    if how[0] == "time":
        seconds, kind = run_seconds(record)
        load = record["load"]["1_5_15_min"][0]
        measured = f"{duration(seconds)} ({kind}) at load {load:.1f}"
        gap = how[1] - seconds
        verdict = "**met**" if gap >= 0 else f"**missed** by {duration(-gap)}"
    elif how[1] is None:   # one field against a floor (a margin; None: not measurable)
        try:
            a = _value(record, how[0])
        except KeyError:
            return ""
        measured = "outside the family's range" if a is None else f"{a:+.2f}"
        short = None if a is None else round(how[2] - a, 2)
        verdict = ("**not measured**" if short is None else "**met**" if short <= 0
                   else f"**missed** by {short:.2f}")
    else:
        a, b = _value(record, how[0]), _value(record, how[1])
        diff = round(a, 2) - round(b, 2)
        measured = f"{pct(a)} vs {pct(b)} ({diff:+.2f})"
        short = round(how[2] - diff, 2)
        verdict = "**met**" if short <= 0 else f"**missed** by {short:.2f}"
    return (f"| {target} | {link(record, doc)} at {record['revision']} | {measured} "
            f"| {verdict} |")


def targets_table(records: list[dict], doc: Path) -> list[str]:
    """BENCHMARKS' quality and time targets that a record measures."""
    by_name = {r["name"]: r for r in records}
    lines = [NOTE, "| target (issue) | record | measured | met? |", "|---|---|---|---|"]
    rows = [target_row(by_name[name], doc, target, how) for name, target, how in TARGETS
            if name in by_name]
    lines += [row for row in rows if row]
    lines += ["", "Commands:", ""]
    lines += [provenance(r, doc) for r in records if r["name"] in {t[0] for t in TARGETS}]
    return lines


# (document, block name, renderer)
BLOCKS = (
    (Path("README.md"), "results-table", readme_table),
    (Path("README.md"), "frontier-table", frontier_table),
    (Path("benchmarks") / "BENCHMARKS.md", "results-targets", targets_table),
)


# ----------------------------------------------------------------------------- files


def load_records(root: Path) -> list[dict]:
    """Every record, the default config's first, then by name."""
    records = [json.loads(p.read_text()) for p in sorted((root / RECORDS).glob("*.json"))]
    return sorted(records, key=lambda r: (r["name"] != "default", r["name"]))


def split_block(text: str, name: str, doc: Path) -> tuple[str, list[str], str]:
    """``(before, block lines, after)`` around the markers of block ``name``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    m = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), text, flags=re.S)
    if m is None:
        raise SystemExit(f"{doc}: no '{begin}' ... '{end}' block")
    return text[:m.start(1)], m.group(1).rstrip("\n").split("\n"), text[m.end(1):]


def first_difference(have: list[str], want: list[str]) -> str:
    """Where ``have`` first departs from ``want``, in a few words."""
    for i, (h, w) in enumerate(zip(have, want, strict=False)):
        if h != w:
            c = next((j for j, (a, b) in enumerate(zip(h, w, strict=False)) if a != b),
                     min(len(h), len(w)))
            lo = max(0, c - 25)
            return (f"line {i + 1} of the block has ...{h[lo:c + 35]!r}..., "
                    f"the records give ...{w[lo:c + 35]!r}...")
    return f"the block has {len(have)} lines, the records give {len(want)}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 when a table differs from its records")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    args = p.parse_args(argv)
    records = load_records(args.root)
    problems = []
    for doc, name, render in BLOCKS:
        path = args.root / doc
        text = path.read_text()
        before, have, after = split_block(text, name, doc)
        want = render(records, doc)
        if have == want:
            continue
        if args.check:
            problems.append(f"{doc} block '{name}' differs from {RECORDS}/: "
                            f"{first_difference(have, want)}")
        else:
            path.write_text(before + "\n".join(want) + "\n" + after)
            print(f"{doc}: '{name}' rewritten from {len(records)} records")
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print("run `python launch/results_table.py` to rewrite the tables from the records",
              file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
