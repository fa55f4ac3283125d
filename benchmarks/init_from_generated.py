"""Generated parameters as initialization (paper Tab. 9) on a finished run, offline.

    python benchmarks/init_from_generated.py --workdir runs/default --out results/init/subset
    python benchmarks/init_from_generated.py --workdir runs/conditional --out results/init/mlp3

Trains ``--n`` networks from each of (a) p-diff samples, (b) the zoo mean, (c) a random
zoo member and (d) random initialization with the run's own training loop
(``training.train_subset_snapshots``: the subset of a subset run, the whole network of
a seed run), a snapshot every ``--every`` steps, and measures the test accuracy of every
snapshot. A conditional run samples its top level (``--level``) and draws (c) from the
zoo members of that level. Writes ``init.json`` (curves), ``init.md`` (steps-to-target
table) and ``init.png`` (the four curves) into ``--out``, and prints the table.
The target defaults to the median test accuracy of the zoo members (c) is drawn from,
minus ``--below`` points.

Per start the table and ``init.json`` give the steps to target of the mean curve and the
spread of the per-run steps (mean / std / min / max over the runs that reach it, the
per-run list, the runs that never do). ``--record PATH`` also writes a compact record of
the measurement (command, revision, machine, load, date, target, per start: n, steps to
target mean / std / min / max / per run, runs reaching, accuracy at step 0 and at the end,
and the speed-ups of p-diff over random init and against a random member), e.g.
``results/init-mnist.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

from _common import load, machine_info


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a finished p-diff run")
    p.add_argument("--out", required=True, help="where init.json / init.md / init.png go")
    p.add_argument("--n", type=int, default=8, help="networks per starting point")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=10, help="steps between snapshots")
    p.add_argument("--target", type=float, default=None, help="test accuracy, percent")
    p.add_argument("--below", type=float, default=0.5,
                   help="default target: the members' median minus this")
    p.add_argument("--level", type=int, default=-1, help="conditional runs: level to sample")
    p.add_argument("--optimizer", default=None, help="default: the zoo's")
    p.add_argument("--lr", type=float, default=None, help="default: the zoo's")
    p.add_argument("--batch-size", type=int, default=None, help="default: the zoo's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", default=None,
                   help="also write the compact measurement record (JSON) here")
    a = p.parse_args(argv)
    load_at_start = load()

    import pdiff_jax
    from pdiff_jax.evaluation import init_training as it

    start = time.perf_counter()
    run = pdiff_jax.load(a.workdir)
    zoo, cfg = run.zoo, run.run.config
    z = cfg.zoo
    seed_mode = zoo.meta.get("mode") == "seed"
    optimizer = a.optimizer or (z.optimizer if seed_mode else z.subset_optimizer)
    lr = a.lr or (z.lr if seed_mode else z.subset_lr)
    batch = a.batch_size or (z.batch_size if seed_mode else z.subset_batch_size)
    key = jax.random.key(a.seed)
    cond = run.generator.condition
    members, level = None, None
    if cond.enabled:
        level = a.level % cond.num_levels
        acc = zoo.test_acc if cond.on == "test" else zoo.train_acc
        members = np.flatnonzero(cond.level_of(acc) == level)
        generated = run.sample(jax.random.fold_in(key, 99), a.n, condition=cond.request(level))
    else:
        generated = run.sample(jax.random.fold_in(key, 99), a.n)
    pool = np.asarray(zoo.test_acc)[members] if members is not None else np.asarray(zoo.test_acc)
    target = a.target if a.target is not None else float(np.median(pool)) - a.below
    evaluator = run.run.evaluator(zoo.base, zoo.spec, zoo.split_point)
    curves = it.init_curves(evaluator, zoo, run.model_def, run.dataset,
                            generated=generated.vectors, key=jax.random.fold_in(key, 1),
                            n=a.n, steps=a.steps, every=a.every, optimizer=optimizer, lr=lr,
                            batch_size=batch, momentum=z.momentum, members=members,
                            mesh=run.run.mesh)
    summary = it.summarize(curves, target)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    setting = {"workdir": str(a.workdir), "arch": zoo.meta.get("model"),
               "mode": zoo.meta.get("mode"), "D": zoo.spec.size, "K": zoo.num_models,
               "level": level, "members_of_level": None if members is None else len(members),
               "optimizer": optimizer, "lr": lr, "batch_size": batch, "n": a.n,
               "steps": a.steps, "every": a.every, "seconds": round(time.perf_counter() - start),
               "machine": machine_info(),
               "load_at_end": load()}
    (out / "init.json").write_text(json.dumps(
        {"setting": setting, "summary": summary, "curves": curves}, indent=1))
    title = f"{zoo.meta.get('model')}, D = {zoo.spec.size}: training from each start"
    it.plot_curves(out / "init.png", curves, target=target, title=title)
    lines = [f"Setting: {json.dumps(setting)}", "", *it.markdown(summary, a.every)]
    (out / "init.md").write_text("\n".join(lines))
    print("\n".join(lines))
    if a.record:
        argv_used = sys.argv[1:] if argv is None else list(argv)
        rec = record(summary, setting, argv_used, load_at_start)
        Path(a.record).parent.mkdir(parents=True, exist_ok=True)
        Path(a.record).write_text(json.dumps(rec, indent=1) + "\n")
        print(f"record: {a.record}")


def revision() -> str:
    """The short commit of the source tree, '+dirty (files)' when pdiff_jax/, benchmarks/
    or configs/ have uncommitted changes ('?' outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pdiff_jax",
                                "benchmarks", "configs"], cwd=root, text=True,
                               capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    files = [line[3:] for line in dirty.splitlines() if line.strip()]
    return rev + (f"+dirty ({', '.join(files)})" if files else "")


def record(summary: dict, setting: dict, argv: list[str], load_at_start: str) -> dict:
    """The compact measurement record: per start the spread of the steps to target."""
    from pdiff_jax.evaluation import init_training as it

    starts = {}
    for kind in it.INIT_KINDS:
        s = summary["kinds"][kind]
        r = s["steps_to_target"]
        starts[kind] = {"label": it.LABELS[kind], "n": r["n"],
                        "steps_to_target": {k: r[k] for k in
                                            ("mean", "std", "min", "max", "per_run")},
                        "runs_reaching": r["reaching"], "runs_not_reaching": r["not_reaching"],
                        "steps_mean_curve": s["steps_mean_curve"],
                        "acc_step0_mean": s["start"], "acc_step0_std": s["start_std"],
                        "acc_final_mean": s["final"], "acc_final_std": s["final_std"]}
    return {"command": "python benchmarks/init_from_generated.py " + shlex.join(argv),
            "revision": revision(), "machine": setting["machine"],
            "load_average": {"start": load_at_start, "end": setting["load_at_end"]},
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "seconds": setting["seconds"],
            "setting": {k: setting[k] for k in ("workdir", "arch", "mode", "D", "K", "level",
                                                "optimizer", "lr", "batch_size", "n",
                                                "steps", "every")},
            "target": summary["target"],
            "std": "sample std (ddof 1): of the accuracies over the n runs, of the steps "
                   "over the runs that reach the target",
            "starts": starts,
            "speedup_pdiff_over_random": {
                "per_run_means": summary["speedup_pdiff_over_random_runs"],
                "mean_curves": summary["speedup_pdiff_over_random"],
                "note": "a start already at the target counts as one snapshot interval"},
            "member_over_pdiff": {
                "per_run_means": summary["member_over_pdiff_runs"],
                "note": ">= 1: p-diff no slower than a random member"}}


if __name__ == "__main__":
    main()
