"""The evaluate stage: measure every group of parameter sets the same way.

Groups, all evaluated by one ``ManyModelEvaluator``: the generated sets, the K
originals, their uniform weight average (the paper's "ensemble"), the
memorization baselines, and optionally originals fine-tuned further from the
nearest neighbour of some generated sets (``finetune.py``).
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import logging

from pdiff_jax.evaluation import baselines, report
from pdiff_jax.evaluation.report import Group


def measure(evaluator, vectors) -> Group:
    """Train and test accuracy, wrong-prediction masks and the vectors of one group."""
    train_acc, _ = evaluator.evaluate(vectors, "train")
    test_acc, wrong = evaluator.evaluate(vectors, "test")
    return Group(train_acc, test_acc, wrong, np.asarray(vectors, np.float32))


def unpack_group(arrays: dict, vectors, n_test: int) -> Group:
    """A group stored by ``evaluate_groups`` (wrong masks bit-packed over ``n_test`` test
    examples) as a ``Group`` with its ``vectors``."""
    wrong = np.unpackbits(arrays["wrong"], axis=1, count=n_test).astype(bool)
    return Group(arrays["train_acc"], arrays["test_acc"], wrong, np.asarray(vectors, np.float32))


def evaluate_groups(evaluator, zoo, generated: np.ndarray, *, key, num_baseline: int = 100,
                    noise_amplitudes=(0.01, 0.05, 0.1), average_k: int = 16,
                    finetune=None) -> tuple[dict, dict]:
    """Evaluate every group against ``zoo``; returns (arrays to store, the results dict).

    ``finetune``: ``None``, or ``(groups -> (Group, similarity dict))`` that fine-tunes
    the nearest originals of some generated sets (see ``finetune.finetuned_neighbours``).
    """
    start = time.perf_counter()
    groups = {"pdiff": generated, "original": zoo.vectors,
              "ensemble": np.asarray(baselines.ensemble(zoo.vectors))}
    drawn = baselines.make_baselines(jax.random.fold_in(key, 0), zoo.vectors, zoo.segments,
                                     n=num_baseline, noise_amplitudes=tuple(noise_amplitudes),
                                     k_average=average_k)
    groups.update({name: np.asarray(v) for name, v in drawn.items()})
    measured = {}
    for name, vectors in groups.items():
        logging.info("evaluate: %s (%d parameter sets)", name, len(vectors))
        measured[name] = measure(evaluator, vectors)
    finetuned = similarity = None
    if finetune is not None:
        finetuned, similarity = finetune(measured, jax.random.fold_in(key, 2))
    meta = {"dataset": zoo.meta["dataset"]["name"], "data": zoo.meta["dataset"],
            "arch": zoo.meta.get("model"), "mode": zoo.meta.get("mode"), "D": zoo.spec.size,
            "K": zoo.num_models, "subset": list(zoo.spec.names),
            "split_point": zoo.split_point,
            "train_examples_for_selection": len(evaluator.inputs["train"][1]),
            "test_examples": len(evaluator.inputs["test"][1])}
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
