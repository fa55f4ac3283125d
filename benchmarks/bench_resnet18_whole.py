"""Whole ResNet-18 generation on one device (issue 27): configs/resnet18_whole.py run end
to end, one width after another, written as one markdown table.

    bash benchmarks/resnet18_whole.sh [--cpu-smoke] [--widths 64] [--budget 540] [--out DIR]

(``resnet18_whole.sh`` installs carried wheels where the device image lacks them, then
runs this.) Each width runs ``python -m pdiff_jax.main --config
configs/resnet18_whole.py:wW`` in a child process of its own (so the device memory peak
is that width's), on the bundled MNIST ``.npz``, given what is left of ``--budget``;
a width stopped there still gets its row, with the stages it finished. ``--cpu-smoke``
runs the same widths' ``smoke`` variants (their recipe at toy sizes on width 8).

One row per width: what finished; collect seconds (merge_many's share, from the log);
generator seconds (autoencoder + diffusion + sample); evaluate seconds; zoo best (by
training accuracy) / median and p-diff best / median test accuracy; the frontier's
margins (results.json ``frontier.margin``: p-diff's median lead over each family at the
same novelty); the child's device memory peak (``peak_bytes_in_use``) and host peak
RSS; the issue's targets, each met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

BUNDLED_NPZ = REPO / "pdiff_jax" / "data" / "bundled" / "mnist.npz"
CONFIG = "configs/resnet18_whole.py"
COLUMNS = ("width", "D", "K", "status", "collect s (align)", "generator s (AE + diff + sample)",
           "evaluate s", "zoo best / median", "p-diff best / median", "frontier margins",
           "device peak", "host peak", "targets")
D_OF_WIDTH = {8: 177_602, 16: 703_866, 32: 2_802_410, 64: 11_183_562}
# --tiny (tests/test_resnet18_whole.py): the smoke run smaller still, every stage and
# one point per frontier family kept, so that a test sees the whole table in ~1 minute.
TINY = ("--config.zoo.num_models=3", "--config.data.max_train=640", "--config.data.max_test=200",
        "--config.evaluate.train_examples=200", "--config.evaluate.batch_size=200",
        "--config.evaluate.recompute_batch_stats=100",
        "--config.evaluate.num_generated=2", "--config.evaluate.num_baseline=2",
        "--config.generator.autoencoder.train.steps=10",
        "--config.generator.diffusion.train.steps=10",
        *(f"--config.evaluate.frontier.{family}=({knob},)" for family, knob in (
            ("noise", 0.3), ("interpolation", 0.5), ("pca_gaussian", 1.0), ("pdiff", 1.0))))
TEN_MINUTES = 600.0


# ----------------------------------------------------------------------------- child


def child(peaks_json: str, main_args: list[str]) -> None:
    """Run ``pdiff_jax.main`` in this process; at exit write its memory peaks."""
    import atexit

    def write_peaks():
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        Path(peaks_json).write_text(json.dumps({
            "device_peak_bytes": stats.get("peak_bytes_in_use"),
            "host_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))

    atexit.register(write_peaks)
    sys.argv = ["pdiff_jax.main", *main_args]
    from pdiff_jax import main as entry

    entry.run()


# ----------------------------------------------------------------------------- table


class Table:
    """One markdown table, rewritten to ``path`` after each row (a killed run keeps its rows)."""

    def __init__(self, path: Path, header: str):
        self.path = path
        self.lines = [header, "", "| " + " | ".join(COLUMNS) + " |",
                      "|" + "---|" * len(COLUMNS)]
        self.flush()

    def row(self, cells: dict) -> None:
        self.lines.append("| " + " | ".join(str(cells.get(c, "-")) for c in COLUMNS) + " |")
        print(self.lines[-1], flush=True)
        self.flush()

    def note(self, text: str) -> None:
        self.lines.append("")
        self.lines.append(text)
        print(text, flush=True)
        self.flush()

    def flush(self) -> None:
        self.path.write_text("\n".join(self.lines) + "\n")


def _gb(nbytes) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1e9:.1f} GB"


def _margins(frontier: dict | None) -> str:
    if not frontier:
        return "none"
    return ", ".join(f"{family} {'n/a' if v is None else f'{v:+.2f}'}"
                     for family, v in frontier.get("margin", {}).items()) or "none"


def targets(results: dict, seconds: float) -> str:
    """The issue's targets: median within 1 of the zoo's, best within 0.3 of the zoo's best
    by train, novelty beyond the noise family's at the same accuracy, within 10 minutes."""
    zoo, pdiff = results["original"], results["pdiff"]
    noise = (results.get("frontier") or {}).get("margin", {}).get("noise")
    met = {"median": pdiff["median"] >= zoo["median"] - 1.0,
           "best": pdiff["best"] >= zoo["best"] - 0.3,
           "noise margin > 0": noise is not None and noise > 0,
           "10 min": seconds <= TEN_MINUTES}
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in met.items())


def align_seconds(log: str) -> str:
    found = re.findall(r"merge_many aligned \d+ members in ([\d.]+) s", log)
    return (f"{float(found[-1]):.0f}" if float(found[-1]) >= 10 else found[-1]) if found else "?"


# ----------------------------------------------------------------------------- one width


def run_width(width: int, args, table: Table, out: Path, deadline: float) -> None:
    from pdiff_jax import artifacts, pipeline

    left = deadline - time.time()
    arg = f"w{width}" + (",smoke" if args.cpu_smoke else "")
    cells = {"width": width if not args.cpu_smoke else f"{width} (smoke: width 8)",
             "D": f"{D_OF_WIDTH[8 if args.cpu_smoke else width]:,}"}
    if left < 30:
        table.row(dict(cells, status="skipped: budget spent"))
        return
    keep = Path(args.keep_workdir) / f"w{width}" if args.keep_workdir else None
    with tempfile.TemporaryDirectory() as tmp:
        workdir = keep or Path(tmp) / "run"
        peaks_json = Path(tmp) / "peaks.json"
        main_args = [f"--config={CONFIG}:{arg}", f"--workdir={workdir}",
                     f"--config.data.name={BUNDLED_NPZ}", *args.override]
        cmd = [sys.executable, __file__, "--child", str(peaks_json), "--", *main_args]
        log_path = out / f"w{width}.log"
        t = time.perf_counter()
        with open(log_path, "w") as log:
            try:
                proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=left, env=dict(os.environ, TQDM_DISABLE="1"))
                status = "finished" if proc.returncode == 0 else f"exit {proc.returncode}"
            except subprocess.TimeoutExpired:
                status = f"stopped at the budget ({left:.0f} s)"
        wall = time.perf_counter() - t
        text = log_path.read_text(errors="replace")
        if status != "finished":
            print(text[-3000:], file=sys.stderr)
        stages = pipeline.stage_seconds(workdir) if workdir.exists() else {}
        peaks = json.loads(peaks_json.read_text()) if peaks_json.exists() else {}
        zoo_k = "-"
        config_json = workdir / artifacts.CONFIG_JSON
        if config_json.exists():
            zoo_k = json.loads(config_json.read_text())["zoo"]["num_models"]
        generator = [stages.get(s) for s in ("autoencoder", "diffusion", "sample")]
        cells.update({
            "K": zoo_k, "status": f"{status}, {wall:.0f} s",
            "collect s (align)": (f"{stages['collect']:.0f} ({align_seconds(text)})"
                                  if "collect" in stages else "-"),
            "generator s (AE + diff + sample)": (
                f"{sum(generator):.0f} ({' + '.join(f'{g:.0f}' for g in generator)})"
                if None not in generator else "-"),
            "evaluate s": f"{stages['evaluate']:.0f}" if "evaluate" in stages else "-",
            "device peak": _gb(peaks.get("device_peak_bytes")),
            "host peak": _gb(peaks.get("host_peak_bytes"))})
        results_path = workdir / artifacts.RESULTS_JSON
        if results_path.exists():
            results = json.loads(results_path.read_text())
            zoo, pdiff = results["original"], results["pdiff"]
            cells.update({
                "zoo best / median": f"{zoo['best']:.2f} / {zoo['median']:.2f}",
                "p-diff best / median": f"{pdiff['best']:.2f} / {pdiff['median']:.2f}",
                "frontier margins": _margins(results.get("frontier")),
                "targets": targets(results, sum(stages.get(s, 0.0) for s in (
                    "collect", "autoencoder", "diffusion", "sample", "evaluate")))})
            shutil.copy(results_path, out / f"w{width}-results.json")
        table.row(cells)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        rest = sys.argv[3:]
        child(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="the widths' smoke variants (toy sizes, width 8), for a CPU")
    ap.add_argument("--widths", default="64", help="comma-separated, run in this order")
    # 540: a lent device runs one command for at most 10 minutes; the rest is start-up
    # and the table (a run stopped at the budget still gets its row).
    ap.add_argument("--budget", type=float, default=540.0,
                    help="seconds for all widths together (default 540)")
    ap.add_argument("--out", default="benchmarks/out", help="directory of resnet18_whole.md")
    ap.add_argument("--keep-workdir", default=None, help="keep each width's run under here")
    ap.add_argument("--override", action="append", default=[],
                    help="a --config.x=y flag for every run (repeatable), e.g. "
                         "--override=--config.zoo.num_models=3")
    ap.add_argument("--tiny", action="store_true",
                    help="--cpu-smoke smaller still (for the test): K = 3, 2 draws a group")
    args = ap.parse_args()
    if args.tiny:
        args.cpu_smoke, args.override = True, [*TINY, *args.override]
    widths = [int(w) for w in args.widths.split(",") if w]
    unknown = sorted(set(widths) - set(D_OF_WIDTH))
    if unknown:
        ap.error(f"--widths: no variant for {unknown}; choose from {sorted(D_OF_WIDTH)}")
    import jax
    from _common import machine_info

    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    table = Table(out / "resnet18_whole.md",
                  f"Device: {device.device_kind} ({device.platform}); host: {machine_info()}; "
                  f"{'CPU SMOKE (toy sizes, width 8)' if args.cpu_smoke else 'full sizes'}"
                  f"{' (--tiny)' if args.tiny else ''}; "
                  f"`{CONFIG}`, budget {args.budget:.0f} s"
                  + (f"; overrides: {' '.join(args.override)}" if args.override else ""))
    for width in widths:
        try:
            run_width(width, args, table, out, start + args.budget)
        except Exception as e:   # one broken width must not lose the others' rows
            table.row({"width": width, "status": f"failed: {type(e).__name__}: {str(e)[:200]}"})
    table.note(f"Whole script: {time.time() - start:.0f} s. Seconds per stage from the "
               "artifacts; 'align' is merge_many's share of collect (from the run's log). "
               "Margins: p-diff's best median lead over each family at the same novelty "
               "(n/a: p-diff outside the family's range). Targets (issue 27): p-diff median "
               ">= zoo median - 1, best >= zoo best by train - 0.3, noise margin > 0, "
               "collect + generator + evaluate <= 10 min.")


if __name__ == "__main__":
    main()
