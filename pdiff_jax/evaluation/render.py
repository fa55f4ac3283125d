"""The report stage: pictures, report.md, results.json and the printed summary,
rendered from a run's stored artifacts (so it can be redone at any time).

Every stage's time comes from its artifact's meta (``pipeline.stage_seconds``), so
the report shows them all whichever command (or notebook call) finished the run.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pdiff_jax import artifacts
from pdiff_jax.evaluation import conditional, frontier_report, plots, report


def render_report(workdir: Path, *, config: dict, key, timings: dict[str, float],
                  tsne: bool = True, write: bool = True) -> dict:
    """Write the report files of ``workdir`` and return the results dict.

    Every process calls this (restoring artifacts is collective); only the one
    with ``write`` renders files. ``key`` draws the latent noise of the t-SNE plot;
    ``timings`` (``{stage: seconds}``, from the stages' artifacts) go to results.json.
    """
    from pdiff_jax.generator import load_generator
    from pdiff_jax.zoo.store import load_zoo

    _, results = artifacts.load_artifact(artifacts.artifact_dir(workdir, artifacts.EVALUATION),
                                         what="evaluation", hint="run the 'evaluate' stage")
    results.pop("seconds", None)   # the stage's own time; it goes to timings_s below
    samples, _ = artifacts.load_artifact(artifacts.artifact_dir(workdir, artifacts.SAMPLES),
                                         what="samples", hint="run the 'sample' stage")
    zoo = load_zoo(artifacts.artifact_dir(workdir, artifacts.ZOO))
    generator = load_generator(workdir)
    latents_orig = np.asarray(generator.encode(zoo.vectors))
    results["autoencoder"] = report.autoencoder_summary(generator.meta)
    latents_gen = np.asarray(samples["latents"])
    noise = np.asarray(jax.random.normal(key, latents_orig.shape))
    if not write:
        return results
    flat = lambda z: z.reshape(len(z), -1)
    pictures = {}
    if tsne or "trajectory" in samples:
        pictures = plots.plot_all(
            results, workdir, latents_orig=flat(latents_orig) if tsne else None,
            latents_gen=flat(latents_gen), latents_noisy=flat(latents_orig + 0.1 * noise),
            trajectories=samples.get("trajectory"), zoo=zoo.vectors,
            generated=samples["vectors"])
    merged = dict(results.get("meta", {}).get("timings_s", {}))
    merged.update(timings)
    results.setdefault("meta", {})["timings_s"] = merged
    results["meta"]["config"] = config
    report.write_results_json(results, workdir)
    report.write_report(results, workdir, pictures)
    print(report.summary_text(results))
    if frontier_report.append_to_report(results, workdir):
        print(frontier_report.summary_text(results["frontier"]))
    if conditional.append_to_report(results, workdir):   # a conditional run's levels
        print(conditional.summary_text(results["conditional"]))
    return results
