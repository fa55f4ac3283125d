"""Turn a finished run into the committed record of a published number.

    python launch/make_record.py runs/default --name default \
        --command "python -m pdiff_jax.main --workdir runs/default" --run

writes ``results/records/default.json``: the quoted fields of the run's results.json
(original, ensemble, p-diff, the memorization baselines, the novelty scalars, never the
per-model arrays), the run's whole config, the exact command, the git revision, the
machine, the load average, the date and the stage timings. ``launch/results_table.py``
renders README's and BENCHMARKS' results tables from these records only.

``--run`` runs ``--command`` first (through the shell, in the current directory) and
records its wall time and the load average at its end. Without it the run is taken as
it is, and the load is the one when the record is made (the record says how long after
the run's end). ``--revision`` names the code that ran where this checkout is not it
(e.g. a run in a ``git archive`` export of a commit).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# Run as a script (python launch/make_record.py): the repository root holds pdiff_jax.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pdiff_jax import artifacts

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "results" / "records"
SCHEMA = 1
# What a results table may quote; everything else in results.json stays in the workdir.
GROUP_FIELDS = ("best", "best_by_train", "avg", "median", "worst", "oracle_best", "n")
FRONTIER_FIELDS = ("knob", "n", "median", "best", "nn_iou_any", "nn_max_iou", "nn_iou_within",
                   "nn_l2")
META_FIELDS = ("arch", "mode", "dataset", "D", "K", "batch_stats", "test_examples",
               "train_examples_for_selection")


def quoted_results(results: dict) -> dict:
    """The scalars of results.json a table quotes: no per-model arrays, no config copy."""
    pick = lambda group: {k: group[k] for k in GROUP_FIELDS if k in group}
    out = {
        "meta": {k: results["meta"][k] for k in META_FIELDS if k in results["meta"]},
        "original": pick(results["original"]),
        "ensemble": {k: v for k, v in results["ensemble"].items() if k != "max_iou"},
        "pdiff": pick(results["pdiff"]),
        "baselines": {name: dict(pick(g), nn_l2_gen_mean=g["novelty"]["nn_l2_gen_mean"],
                                 max_iou_gen_mean=g["novelty"]["max_iou_gen_mean"])
                      for name, g in results.get("baselines", {}).items()},
        "novelty": dict(results["novelty"]),
    }
    if "frontier" in results:   # every point of the accuracy-novelty frontier (small)
        f = results["frontier"]
        point = lambda q: {k: q[k] for k in FRONTIER_FIELDS if k in q}
        out["frontier"] = {
            "novelty": f["novelty"], "pdiff_knob": f.get("pdiff_knob", "temperature"),
            "zoo": f["zoo"], "pdiff": [point(q) for q in f["pdiff"]],
            "families": {name: [point(q) for q in pts] for name, pts in f["families"].items()},
            "margin": f["margin"], "margin_interval": f.get("margin_interval", {}),
            "margin_notes": f.get("margin_notes", {})}
    if "conditional" in results:   # per requested level: each group's summary, no arrays
        c = results["conditional"]
        out["conditional"] = {k: v for k, v in c.items() if k != "levels"} | {
            "levels": [{k: v for k, v in level.items() if not k.endswith("_acc")}
                       for level in c["levels"]]}
    if "autoencoder" in results:   # how well the generator's autoencoder copies the zoo
        out["autoencoder"] = {k: v for k, v in results["autoencoder"].items()
                              if not isinstance(v, (list, dict))}
    return out


def git_revision(repo: Path = ROOT) -> str:
    """``git rev-parse --short HEAD``, with ``+dirty`` when tracked files differ from it."""
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=True).stdout.strip()
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                             "--untracked-files=no"], capture_output=True, text=True,
                            check=True).stdout
    return rev + ("+dirty" if status.strip() else "")


def machine() -> dict:
    """The CPU, cores, memory, Python and JAX of this machine, and JAX's backend here."""
    cpu, mem_gb = platform.processor() or platform.machine(), None
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines()
                   if line.startswith("model name"))
        kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
        mem_gb = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        pass   # not Linux: the platform's own words
    import jax

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb,
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"), "backend": jax.default_backend(),
            "device": jax.devices()[0].device_kind}


def finished_at(workdir: Path) -> float:
    """When the run ended: the last line of metrics.jsonl (its report), else results.json's
    modification time."""
    metrics = workdir / artifacts.METRICS_JSONL
    if metrics.is_file():
        lines = metrics.read_text().splitlines()
        if lines:
            return float(json.loads(lines[-1])["time"])
    return (workdir / artifacts.RESULTS_JSON).stat().st_mtime


def iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def make_record(workdir: Path, *, name: str, command: str, revision: str,
                wall_s: float | None = None, now: float | None = None,
                load: tuple | None = None, machine_info: dict | None = None) -> dict:
    """The record of the finished run in ``workdir`` (a dict, as written to JSON)."""
    results = json.loads((workdir / artifacts.RESULTS_JSON).read_text())
    config = json.loads((workdir / artifacts.CONFIG_JSON).read_text())
    end = finished_at(workdir)
    now = time.time() if now is None else now
    load = os.getloadavg() if load is None else load
    return {
        "schema": SCHEMA,
        "name": name,
        "command": command,
        "revision": revision,
        "finished": iso(end),
        "wall_s": None if wall_s is None else round(wall_s, 1),
        "timings_s": results["meta"].get("timings_s", {}),
        "load": {"1_5_15_min": [round(x, 2) for x in load],
                 "seconds_after_run": max(0, round(now - end))},
        "machine": machine() if machine_info is None else machine_info,
        "results": quoted_results(results),
        "config": config,
    }


def write_record(record: dict, records: Path = RECORDS) -> Path:
    records.mkdir(parents=True, exist_ok=True)
    path = records / f"{record['name']}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", type=Path, help="the run's workdir (results.json, config.json)")
    p.add_argument("--name", required=True, help="the record's name: results/records/NAME.json")
    p.add_argument("--command", required=True, help="the exact command that made the run")
    p.add_argument("--run", action="store_true", help="run --command first (shell), timing it")
    p.add_argument("--revision", help="the code that ran (default: this checkout's, "
                   "git rev-parse --short HEAD, +dirty if tracked files changed)")
    p.add_argument("--records", type=Path, default=RECORDS, help="where records go")
    args = p.parse_args(argv)
    revision = args.revision or git_revision()
    wall = None
    if args.run:
        start = time.perf_counter()
        done = subprocess.run(args.command, shell=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode:
            print(f"make_record: the command failed (exit {done.returncode}); no record",
                  file=sys.stderr)
            return done.returncode
    record = make_record(args.workdir, name=args.name, command=args.command,
                         revision=revision, wall_s=wall)
    path = write_record(record, args.records)
    print(f"{path}: {record['name']} at {revision}, finished {record['finished']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
