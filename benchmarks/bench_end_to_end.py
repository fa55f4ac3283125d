"""The default config end to end: wall time, stage timings and quality numbers.

    python benchmarks/bench_end_to_end.py                 # one run
    python benchmarks/bench_end_to_end.py --runs 2 --extra=--config.seed=1

Each run is ``python -m pdiff_jax.main --workdir <tmp> --config.data.data_dir=<tmp tfds>``
in a fresh process (so the bundled MNIST is used and nothing is cached between runs).
Reports wall time (target <= 5 min), peak RSS of the run, the per-stage timings written to
``<workdir>/metrics.jsonl`` (stage 'timing') and the quality numbers from ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, machine_info, median

STAGES = ("collect", "autoencoder", "diffusion", "sample", "evaluate", "report")


def one_run(extra: list[str], keep: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(keep) if keep else Path(tmp) / "run"
        tfds_dir = Path(tmp) / "tfds"
        tfds_dir.mkdir()
        cmd = [sys.executable, "-m", "pdiff_jax.main", f"--workdir={workdir}",
               f"--config.data.data_dir={tfds_dir}", *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load0 = load()
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env=dict(os.environ, TQDM_DISABLE="1"))
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = {"cmd": " ".join(shlex.quote(c) for c in cmd), "wall_s": wall,
               "load_start": load0, "load_end": load(), "rc": proc.returncode,
               "peak_rss_gb": after.ru_maxrss / 2**20,
               "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}
        if proc.returncode:
            out["error"] = proc.stderr[-2000:]
            return out
        timings = {}
        for line in (workdir / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("stage") == "timing":
                timings.update({k[:-2]: v for k, v in rec.items() if k.endswith("_s")})
        res = json.loads((workdir / "results.json").read_text())
        out["timings"] = timings
        out["quality"] = {
            "original.best": res["original"]["best"], "original.median": res["original"]["median"],
            "pdiff.best": res["pdiff"]["best"], "pdiff.median": res["pdiff"]["median"],
            "pdiff.avg": res["pdiff"]["avg"],
            "ensemble": (res.get("ensemble") or {}).get("acc"),
            "D": res.get("meta", {}).get("D"), "K": res.get("meta", {}).get("K")}
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--extra", action="append", default=[],
                    help="extra argument for pdiff_jax.main (repeatable)")
    ap.add_argument("--keep", default=None, help="workdir to keep (runs=1 only)")
    ap.add_argument("--json", default=None, help="also write the raw results here")
    args = ap.parse_args()
    runs = [one_run(args.extra, args.keep) for _ in range(args.runs)]
    print(f"Machine: {machine_info()}\n")
    print("| run | wall | target <= 300 s | peak RSS | CPU time | load start -> end | "
          + " | ".join(STAGES) + " |")
    print("|---" * (6 + len(STAGES)) + "|")
    for i, r in enumerate(runs):
        if r["rc"]:
            print(f"| {i + 1} | failed (exit {r['rc']}) | | | | | {r['error'][-300:]!r} |")
            continue
        st = " | ".join(f"{r['timings'].get(s, float('nan')):.1f} s" for s in STAGES)
        print(f"| {i + 1} | {r['wall_s']:.0f} s | {'met' if r['wall_s'] <= 300 else 'MISSED'} "
              f"| {r['peak_rss_gb']:.2f} GB | {r['cpu_s']:.0f} s | {r['load_start']} -> "
              f"{r['load_end']} | {st} |")
    ok = [r for r in runs if not r["rc"]]
    if ok:
        print(f"\nMedian wall time: {median([r['wall_s'] for r in ok]):.0f} s\n")
        print("| run | original.best | pdiff.best | best >= orig.best - 0.1 | original.median | "
              "pdiff.median | median >= orig.median - 1 | pdiff.avg | ensemble | D | K |")
        print("|---" * 11 + "|")
        for i, r in enumerate(runs):
            if r["rc"]:
                continue
            q = r["quality"]
            best_ok = q["pdiff.best"] >= q["original.best"] - 0.1
            med_ok = q["pdiff.median"] >= q["original.median"] - 1
            ens = "n/a" if q["ensemble"] is None else f"{q['ensemble']:.2f}"
            print(f"| {i + 1} | {q['original.best']:.2f} | {q['pdiff.best']:.2f} | "
                  f"{'met' if best_ok else 'MISSED'} | {q['original.median']:.2f} | "
                  f"{q['pdiff.median']:.2f} | {'met' if med_ok else 'MISSED'} | "
                  f"{q['pdiff.avg']:.2f} | {ens} | {q['D']} | {q['K']} |")
    print(f"\nCommand: `{runs[0]['cmd']}`")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
