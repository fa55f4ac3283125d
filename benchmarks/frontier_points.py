"""More frontier points of a finished run, drawn exactly as its evaluate stage draws them.

    python benchmarks/frontier_points.py --workdir RUN --out points.json \
        --knobs pdiff=0.75,1,1.5,2 noise=0.2
    python benchmarks/frontier_points.py --workdir RUN --out mixes.json \
        --knobs pdiff=0.2,0.4 --set evaluate.frontier.pdiff_knob=latent_mix \
        generator.sampling.temperature=0.75

Each point's draws depend only on the run's seed, the family and the knob
(``pipeline.frontier_of_run``), so a point drawn here equals the one the evaluate stage
would draw at that knob, and a generator retrained in a copy of a run (same zoo, same
seed) can be set against the families that run measured. RUN needs its ``evaluation``
artifact (the zoo's own predictions, against which novelty is measured): copy it from
the run that measured the families when only the generator was retrained. Prints each
point's knob, median and ``nn_iou_any``; writes ``{family: [point, ...]}`` to ``--out``.
``--set`` changes fields of the run's config first (what p-diff's knob sweeps, the
sampler's other settings), as launch/sweep.py's ``--set`` does: Python literals, checked
against the config.
"""

from __future__ import annotations

import argparse
import json

import jax

from pdiff_jax import artifacts, pipeline
from pdiff_jax.config.choices import FRONTIER_FAMILIES
from pdiff_jax.config.overrides import check_overrides, parse_sets
from pdiff_jax.run import open_run

FAMILIES = (*FRONTIER_FAMILIES, "pdiff")   # every knob tuple of evaluate.frontier


def parse_knobs(items: list[str]) -> dict[str, tuple[float, ...]]:
    """``['pdiff=0.75,1', 'noise=0.2']`` -> ``{'pdiff': (0.75, 1.0), 'noise': (0.2,)}``."""
    knobs = {}
    for item in items:
        family, _, values = item.partition("=")
        if family not in FAMILIES or not values:
            raise SystemExit(f"--knobs {item!r}: use FAMILY=v1,v2 with FAMILY one of "
                             f"{list(FAMILIES)}")
        knobs[family] = tuple(float(v) for v in values.split(","))
    return knobs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--knobs", nargs="+", required=True, help="FAMILY=v1,v2 ...")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="config fields to change first, e.g. "
                             "evaluate.frontier.pdiff_knob=latent_mix")
    args = parser.parse_args(argv)
    run = open_run(args.workdir)
    run.config = check_overrides(run.config, "--set", parse_sets(args.set)).unlock()
    frontier = run.config.evaluate.frontier
    frontier.update(**{family: () for family in FAMILIES})
    frontier.update(**parse_knobs(args.knobs))
    arrays, _ = artifacts.load_artifact(
        artifacts.artifact_dir(run.workdir, artifacts.EVALUATION), what="evaluation")
    # The evaluate stage's own key for the frontier (pipeline._evaluate).
    key = jax.random.fold_in(pipeline.stage_key(run.config.seed, "evaluate"),
                             pipeline.FRONTIER_SALT)
    out = pipeline.frontier_of_run(run, key, arrays["original"])
    points = dict(out["families"], pdiff=out["pdiff"])
    with open(args.out, "w") as f:
        json.dump(points, f, indent=1)
    for family, rows in points.items():
        for p in rows:
            print(f"{family} {p['knob']:g}: median {p['median']:.2f} at nn_iou_any "
                  f"{p['nn_iou_any']:.3f}")


if __name__ == "__main__":
    main()
