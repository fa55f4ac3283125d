"""The evaluation and report stages: measure every group, compare, write the report.

Groups of parameter sets, all evaluated by the same ``ManyModelEvaluator``:
the generated sets, the K originals, their uniform average (ensemble), the
memorization baselines, and originals fine-tuned further from the nearest
neighbour of some generated sets (the paper's Fig. 3g comparison).
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import logging

from pdiff_jax import artifacts, baselines, novelty, plots, report
from pdiff_jax.report import Group
from pdiff_jax.subset import merge, unflatten_subset


def _measure(evaluator, vectors) -> Group:
    train_acc, _ = evaluator.evaluate(vectors, "train")
    test_acc, wrong = evaluator.evaluate(vectors, "test")
    return Group(train_acc, test_acc, wrong, np.asarray(vectors, np.float32))


def _finetuned_neighbours(run, generated: Group, originals: Group, key) -> tuple[Group, dict]:
    """Fine-tune the nearest original (max IoU) of a few generated sets, as the paper does.

    Returns the fine-tuned group and how alike each stays to its source: the
    IoU of source vs fine-tuned, vs source + noise, and vs the generated set.
    """
    from pdiff_jax.zoo import train_subset_snapshots

    cfg, zoo, ev = run.config.evaluate, run.zoo, run.evaluator
    n = min(cfg.finetune_pairs, len(generated.test_acc))
    picks = np.asarray(jax.random.choice(key, len(generated.test_acc), (n,), replace=False))
    nearest = novelty.iou_matrix(generated.wrong[picks], originals.wrong).argmax(axis=1)
    inputs, labels = ev.inputs["train"]
    tuned = []
    for i, src in enumerate(nearest):
        base = jax.device_get(merge(zoo.base, unflatten_subset(zoo.vectors[src], zoo.spec)))
        snap = train_subset_snapshots(
            run.model_def, base, zoo.spec, zoo.split_point, inputs, labels, num_snapshots=1,
            save_every=cfg.finetune_steps, optimizer=run.config.zoo.subset_optimizer,
            lr=run.config.zoo.subset_lr, batch_size=run.config.zoo.subset_batch_size,
            momentum=run.config.zoo.momentum, seed=run.config.seed + 1000 + i, mesh=run.mesh,
            desc=f"finetune {i + 1}/{n}")
        tuned.append(snap[0])
    tuned = _measure(ev, np.stack(tuned))
    noised = baselines.noisy_zoo(jax.random.fold_in(key, 1), zoo.vectors[nearest], 0.05, n=n,
                                 segments=[int(np.prod(s)) for s in zoo.spec.shapes])
    noised = _measure(ev, np.asarray(noised))
    src_wrong = originals.wrong[nearest]

    def paired_iou(wrong):
        return float(np.mean([novelty.iou_matrix(a[None], b[None])[0, 0]
                              for a, b in zip(src_wrong, wrong, strict=True)]))

    similarity = {"iou_source_finetuned": paired_iou(tuned.wrong),
                  "iou_source_noised": paired_iou(noised.wrong),
                  "iou_source_generated": paired_iou(generated.wrong[picks]),
                  "pairs": n}
    return tuned, similarity


def evaluate_groups(run, generated_vectors: np.ndarray, *, key) -> tuple[dict, dict]:
    """Evaluate every group; returns (arrays to store, the results dict)."""
    cfg, zoo, ev = run.config.evaluate, run.zoo, run.evaluator
    start = time.perf_counter()
    segments = [int(np.prod(s)) for s in zoo.spec.shapes]
    groups = {"pdiff": generated_vectors, "original": zoo.vectors,
              "ensemble": np.asarray(baselines.ensemble(zoo.vectors))}
    drawn = baselines.make_baselines(jax.random.fold_in(key, 0), zoo.vectors, segments,
                                     n=cfg.num_baseline, noise_amplitudes=tuple(
                                         cfg.noise_amplitudes), k_average=cfg.average_k)
    groups.update({name: np.asarray(v) for name, v in drawn.items()})
    measured = {}
    for name, vectors in groups.items():
        logging.info("evaluate: %s (%d parameter sets)", name, len(vectors))
        measured[name] = _measure(ev, vectors)
    finetuned, similarity = None, None
    if cfg.finetune_pairs > 0:
        finetuned, similarity = _finetuned_neighbours(run, measured["pdiff"],
                                                      measured["original"],
                                                      jax.random.fold_in(key, 2))
    meta = {"dataset": zoo.meta["dataset"]["name"], "data": zoo.meta["dataset"],
            "arch": zoo.meta.get("model"),
            "mode": zoo.meta.get("mode"), "D": zoo.spec.size, "K": zoo.num_models,
            "subset": list(zoo.spec.names), "split_point": zoo.split_point,
            "train_examples_for_selection": len(ev.inputs["train"][1]),
            "test_examples": len(ev.inputs["test"][1])}
    results = report.build_results(
        measured["original"], measured["pdiff"], ensemble=measured["ensemble"],
        baselines={name: measured[name] for name in drawn}, finetuned=finetuned,
        meta=meta, acc_unit="percent")
    if similarity:
        results["finetuned"]["source_similarity"] = similarity
    results["meta"]["timings_s"] = {"evaluate": round(time.perf_counter() - start, 2)}
    arrays = {name: {"train_acc": g.train_acc, "test_acc": g.test_acc,
                     "wrong": np.packbits(g.wrong, axis=1)} for name, g in measured.items()}
    return arrays, report.to_jsonable(results)


def write_outputs(run) -> dict:
    """Pictures, report.md, results.json and the printed summary, from stored artifacts.

    Every process calls this (restoring artifacts is collective); process 0 writes.
    """
    from pdiff_jax.generator import load_generator

    _, results = artifacts.load_artifact(run.workdir / "evaluation", what="evaluation",
                                         hint="run the 'evaluate' stage first")
    samples, _ = artifacts.load_artifact(run.workdir / "samples", what="samples",
                                         hint="run the 'sample' stage first")
    zoo = run.zoo
    generator = load_generator(run.generator_dir)
    latents_orig = np.asarray(generator.encode(zoo.vectors))
    latents_gen = np.asarray(samples["latents"])
    noise = np.random.default_rng(run.config.seed).normal(size=latents_orig.shape)
    if not run.is_writer:   # loading above is collective (Orbax); writing is process 0's
        return results
    pictures = {}
    if run.config.evaluate.tsne or run.config.evaluate.trajectories:
        pictures = plots.plot_all(
            results, run.workdir,
            latents_orig=latents_orig.reshape(len(latents_orig), -1) if run.config.evaluate.tsne
            else None,
            latents_gen=latents_gen.reshape(len(latents_gen), -1),
            latents_noisy=(latents_orig + 0.1 * noise).reshape(len(latents_orig), -1),
            trajectories=samples.get("trajectory"), zoo=zoo.vectors,
            generated=samples["vectors"])
    timings = dict(results.get("meta", {}).get("timings_s", {}))
    timings.update({k: round(v, 2) for k, v in run.timings.items()})
    results.setdefault("meta", {})["timings_s"] = timings
    results["meta"]["config"] = run.config.to_dict()
    report.write_results_json(results, run.workdir)
    report.write_report(results, run.workdir, pictures)
    print(report.summary_text(results))
    return results
