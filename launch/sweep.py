"""Expand a config's declared sweep (its ``get_sweep(arg)``) into runs, and print or start them.

    python launch/sweep.py configs/resnet18.py --workdir runs/ablations            # print
    python launch/sweep.py configs/resnet18.py:cifar10 --only k --run              # K ablation
    python launch/sweep.py configs/resnet18.py --via "sbatch launch/slurm.sbatch"  # sbatch lines

``get_sweep(arg)`` returns ``{run name: {dotted config key: value}}``. Every
override is checked against the locked config before anything starts, so a
typo fails here, not hours into a cluster job. Each run gets its own workdir
``<workdir>/<name>`` (a run is resumable, so rerunning the sweep skips
finished stages).

Suites (``pdiff_jax/suites/catalog.py``; a config may add its own with ``get_suites(arg)``):

    python launch/sweep.py configs/default.py --suite ablations             # print the plan
    python launch/sweep.py configs/default.py --suite ablations --run       # run, then aggregate
    python launch/sweep.py configs/default.py --suite ablations --aggregate  # table + plots only
    python launch/sweep.py configs/default.py --suite paper_vs_ours --run \
        --set generator.autoencoder.train.steps=500      # a common override for every run

run every run of the suite as ``python -m pdiff_jax.main`` subprocesses, as many
at once as ``--jobs`` (default: one per GPU, or one per physical CPU core, each
pinned to its core), each in ``<--workdir-root>/<suite>/<run>`` with its log in
``run.log`` there. Finished runs are skipped; a failed run is reported and the
others go on; the exit code is 1 if any run failed. Runs whose zoo sections are
equal collect one zoo: the others start from a link to it (``--no-share-zoo``:
each collects its own). The aggregator
(``pdiff_jax/suites/aggregate.py``) then writes suite.md, suite.json and one plot per
swept factor into ``<--workdir-root>/<suite>``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

# Run as a script (python launch/sweep.py): the repository root holds pdiff_jax.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pdiff_jax.config.defaults import config_module
from pdiff_jax.config.overrides import check_overrides, parse_sets
from pdiff_jax.errors import ConfigError, UserError


def load_config(config_spec: str):
    """``(config file, arg, module, config)`` for ``'path.py'`` or ``'path.py:arg'``."""
    path, _, arg = config_spec.partition(":")
    arg = arg or None
    module = config_module(path)
    return path, arg, module, module.get_config(arg)


def load_sweep(config_spec: str) -> tuple[str, str | None, dict[str, dict]]:
    """``(config file, arg, runs)`` for ``'path.py'`` or ``'path.py:arg'``."""
    path, arg, module, config = load_config(config_spec)
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{path} declares no sweep: add get_sweep(arg) returning "
                         "{run name: {dotted config key: value}}")
    runs = module.get_sweep(arg)
    for name, overrides in runs.items():
        check_overrides(config, f"sweep run {name!r}", overrides)
    return path, arg, runs


def load_suite(config_spec: str, suite: str):
    """``(base config, runs)`` of suite ``suite``: the config's ``get_suites(arg)`` first,
    then ``pdiff_jax.suites.catalog.SUITES`` (given the config's model name and zoo mode)."""
    from pdiff_jax.suites import catalog as suites

    path, arg, module, config = load_config(config_spec)
    own = module.get_suites(arg) if hasattr(module, "get_suites") else {}
    if suite in own:
        runs = own[suite]
    elif suite in suites.SUITES:
        runs = suites.SUITES[suite](arch=config.model.name, mode=config.zoo.mode)
    else:
        raise ConfigError(f"no suite {suite!r} for {path}; choose from "
                         f"{sorted(set(own) | set(suites.SUITES))}")
    for name, overrides in runs.items():
        check_overrides(config, f"sweep run {name!r}", overrides)
    return config, runs


def _get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node.to_dict() if hasattr(node, "to_dict") else node


def flag_value(value) -> str:
    """A value as ml_collections' ``--config.key=VALUE`` flag parser reads it."""
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(flag_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def commands(config_spec: str, workdir: str, runs: dict[str, dict], via: str = "",
             python: str = sys.executable,
             common: dict | None = None) -> list[tuple[str, list[str]]]:
    """``[(name, argv)]``: one ``pdiff_jax.main`` invocation per run, optionally wrapped;
    ``common`` overrides (``--set``) come before each run's own."""
    out = []
    for name, overrides in runs.items():
        args = ["--config", config_spec, "--workdir", str(Path(workdir) / name)]
        args += [f"--config.{k}={flag_value(v)}" for k, v in {**(common or {}),
                                                               **overrides}.items()]
        head = shlex.split(via) if via else [python, "-m", "pdiff_jax.main"]
        out.append((name, head + args))
    return out


def prepare_data(configs) -> None:
    """Build each data set the runs read once, before runs start together.

    Parallel runs would otherwise race to build the same TFDS files on first use
    (launch/README.md). A data set that cannot be prepared is left for its runs to
    report.
    """
    seen = set()
    for config in configs:
        key = (config.data.name, config.data.data_dir)
        if key in seen:
            continue
        seen.add(key)
        code = ("import sys; from pdiff_jax.data import load_dataset; "
                "load_dataset(sys.argv[1], data_dir=sys.argv[2] or None, max_train=20, "
                "max_test=20)")
        done = subprocess.run([sys.executable, "-c", code, *key], capture_output=True,
                              text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"could not prepare data set {key[0]!r} ({last}); its runs will say why",
                  file=sys.stderr)


def suite_main(args, runs_filter) -> int:
    """Print the plan of a suite, or run it (--run) and/or aggregate it (--aggregate)."""
    from pdiff_jax.pipeline import STAGES
    from pdiff_jax.suites import aggregate
    from pdiff_jax.suites import placement as suite_placement
    from pdiff_jax.suites import runner as suite_runner
    from pdiff_jax.suites import shared_zoos as suite_zoos

    config, suite = load_suite(args.config, args.suite)
    common = parse_sets(args.set)   # every run of the suite (a shortened schedule, ...)
    config = check_overrides(config, "sweep --set", common)
    runs = runs_filter(suite)   # what to run (--only); the table always shows the whole suite
    suite_dir = Path(args.workdir_root) / args.suite
    resolved = {name: check_overrides(config, f"sweep run {name!r}", o)
                for name, o in suite.items()}
    expected = {name: json.loads(c.to_json_best_effort(sort_keys=True))
                for name, c in resolved.items()}
    swept = sorted({k for o in suite.values() for k in o})
    values = {name: {k: _get(c, k) for k in swept} for name, c in resolved.items()}
    argvs = dict(commands(args.config, str(suite_dir), runs, common=common))
    zoo_sections = STAGES[0].sections   # what the collect stage reads: equal -> one zoo
    zoo_keys = {name: None if args.no_share_zoo else suite_zoos.zoo_key(c, zoo_sections)
                for name, c in expected.items()}
    root = Path(args.workdir_root)
    states = {name: suite_runner.run_state(suite_dir / name, expected[name]) for name in runs}
    # 'running': another invocation's process still works in that workdir; leave it alone.
    todo = [n for n in runs if states[n]["state"] in ("pending", "failed", "interrupted")]
    title = f"Suite `{args.suite}` of `{args.config}`"

    if not (args.run or args.aggregate):
        print(f"{title}: {len(runs)} runs in {suite_dir}, {len(todo)} to run "
              "(add --run to run them)")
        width = max(map(len, runs))
        for name, overrides in runs.items():
            changes = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "(base config)"
            print(f"  {name:<{width}}  {states[name]['state']:<11} {changes}")
            print(f"  {'':<{width}}  {shlex.join(argvs[name])}")
        return 0

    failed = [n for n in runs if states[n]["state"] == "stale"]
    for name in failed:
        print(f"STALE    {name}: {states[name]['error']}", file=sys.stderr)
    if args.run:
        skipped = [n for n in runs if states[n]["state"] == "finished"]
        if skipped:
            print(f"skipping {len(skipped)} finished run(s): {', '.join(skipped)}", flush=True)
        busy = [n for n in runs if states[n]["state"] == "running"]
        if busy:
            print(f"leaving {len(busy)} run(s) that another invocation is running: "
                  f"{', '.join(busy)}", flush=True)
        if todo:
            platform, devices = suite_placement.probe_devices()   # which devices to hand out
            jobs = args.jobs or suite_placement.default_jobs(
                platform, devices, len(suite_placement.cpu_core_groups()),
                suite_placement.available_memory_gb())
            jobs = min(jobs, len(todo))
            if jobs > 1:
                prepare_data(resolved[n] for n in todo)
            slots = suite_placement.plan_slots(platform, devices, jobs)
            print(f"running {len(todo)} run(s), {jobs} at once on {platform} "
                  f"({devices} device(s))", flush=True)
            work = [suite_runner.Job(n, argvs[n], suite_dir / n, expected[n], zoo_keys[n])
                    for n in todo]
            outcomes = suite_runner.run_jobs(
                work, slots, say=lambda m: print(m, flush=True),
                donors=lambda: suite_zoos.zoo_donors(root, zoo_sections))
            failed += [n for n, o in outcomes.items() if o["state"] != "finished"]
    summary = aggregate.aggregate_suite(suite_dir, suite, title=title, values=values,
                                        expected_configs=expected)
    print("\n".join(aggregate.table_lines(summary["runs"])))
    print(f"wrote {suite_dir / aggregate.SUITE_MD}, {aggregate.SUITE_JSON} and "
          f"{len(summary['plots'])} plot(s)")
    if failed:
        print("runs that did not finish:", file=sys.stderr)
        for row in summary["runs"]:
            if row["run"] in failed:
                print(f"  {row['run']}: {row['error'] or row['state']}\n    log: {row['log']}",
                      file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="config file, optionally with ':arg' (configs/resnet18.py)")
    parser.add_argument("--workdir", default="runs/sweep", help="parent of the runs' workdirs "
                        "(get_sweep mode)")
    parser.add_argument("--only", default="", help="comma-separated run-name prefixes (k,norm)")
    parser.add_argument("--via", default="", help="launcher taking main's flags, e.g. "
                        "'launch/local.sh 2' or 'sbatch launch/slurm.sbatch' (get_sweep mode)")
    parser.add_argument("--run", action="store_true", help="start the runs (default: print "
                        "the commands / the suite's plan)")
    parser.add_argument("--suite", default="", help="run a named suite "
                        "(pdiff_jax/suites/catalog.py or the config's get_suites) instead of "
                        "the config's get_sweep")
    parser.add_argument("--workdir-root", default="runs/suites",
                        help="suites: runs go to ROOT/SUITE/RUN, the table to ROOT/SUITE")
    parser.add_argument("--jobs", type=int, default=0, help="suites: runs at once (default: "
                        "one per GPU, or one per physical CPU core within memory)")
    parser.add_argument("--aggregate", action="store_true", help="suites: write suite.md, "
                        "suite.json and the plots from the runs' results (--run does it too)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="suites: a config override for every run (repeatable), e.g. "
                        "a shortened schedule: --set generator.autoencoder.train.steps=500")
    parser.add_argument("--no-share-zoo", action="store_true", help="suites: collect every "
                        "run's zoo itself (default: runs with equal zoo sections share one "
                        "finished zoo, linked into their workdirs)")
    args = parser.parse_args(argv)

    def only(runs):
        if not args.only:
            return runs
        prefixes = tuple(p for p in args.only.split(",") if p)
        picked = {k: v for k, v in runs.items() if k.startswith(prefixes)}
        if not picked:
            parser.error(f"no run name starts with {args.only!r}")
        return picked

    if not args.suite and (args.aggregate or args.jobs or args.set or args.no_share_zoo):
        parser.error("--aggregate, --jobs, --set and --no-share-zoo need --suite")
    try:
        if args.suite:
            return suite_main(args, only)
        _, _, runs = load_sweep(args.config)
    except (UserError, FileNotFoundError) as e:   # a typo in the command or config: no traceback
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    runs = only(runs)
    failed = []
    for name, argv_ in commands(args.config, args.workdir, runs, via=args.via):
        print(shlex.join(argv_), flush=True)
        if args.run and subprocess.run(argv_).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
