"""Originals fine-tuned further: the paper's Fig. 3g comparison for novelty.

Take the nearest original (max IoU of wrong predictions) of a few generated
sets, train its subset a little more, and see how alike the result stays to
its source: if fine-tuning moves a model as far as p-diff's samples sit from
their neighbours, the samples are no newer than a few extra SGD steps.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from pdiff_jax.evaluation import baselines, novelty
from pdiff_jax.evaluation.groups import measure
from pdiff_jax.evaluation.report import Group
from pdiff_jax.params.subset import merge, unflatten_subset
from pdiff_jax.zoo import training


def finetuned_neighbours(groups: dict[str, Group], key, *, evaluator, zoo, model_def,
                         pairs: int, steps: int, optimizer: str, lr: float, batch_size: int,
                         momentum: float = 0.9, mesh=None) -> tuple[Group, dict]:
    """Fine-tune the nearest original of ``pairs`` random generated sets for ``steps``.

    Returns the fine-tuned group and how alike each stays to its source: the
    mean IoU of source vs fine-tuned, vs source + noise, and vs the generated set.
    All randomness (which sets, each run's batches, the noise) comes from ``key``.
    """
    generated, originals = groups["pdiff"], groups["original"]
    n = min(pairs, len(generated.test_acc))
    picks = np.asarray(jax.random.choice(key, len(generated.test_acc), (n,), replace=False))
    nearest = novelty.iou_matrix(generated.wrong[picks], originals.wrong).argmax(axis=1)
    seeds = np.asarray(jax.random.randint(jax.random.fold_in(key, 2), (n,), 0, 2**31 - 1))
    inputs, labels = evaluator.inputs["train"]
    tuned = []
    for i, src in enumerate(nearest):
        base = jax.device_get(merge(zoo.base, unflatten_subset(zoo.vectors[src], zoo.spec)))
        snap = training.train_subset_snapshots(
            model_def, base, zoo.spec, zoo.split_point, inputs, labels, num_snapshots=1,
            save_every=steps, optimizer=optimizer, lr=lr, batch_size=batch_size,
            momentum=momentum, seed=int(seeds[i]), mesh=mesh, desc=f"finetune {i + 1}/{n}",
            batch_norm=training.batch_norm_mode(zoo.spec, zoo.split_point))
        tuned.append(snap[0])
    tuned = measure(evaluator, np.stack(tuned))
    noised = baselines.noisy_zoo(jax.random.fold_in(key, 1), zoo.vectors[nearest], 0.05, n=n,
                                 segments=zoo.segments)
    noised = measure(evaluator, np.asarray(noised))
    src_wrong = originals.wrong[nearest]

    def paired_iou(wrong):
        return float(np.mean([novelty.iou_matrix(a[None], b[None])[0, 0]
                              for a, b in zip(src_wrong, wrong, strict=True)]))

    similarity = {"iou_source_finetuned": paired_iou(tuned.wrong),
                  "iou_source_noised": paired_iou(noised.wrong),
                  "iou_source_generated": paired_iou(generated.wrong[picks]),
                  "pairs": n}
    return tuned, similarity


def finetuned_members(members, steps: tuple, key, *, evaluator, zoo, model_def,
                      optimizer: str, lr: float, batch_size: int, momentum: float = 0.9,
                      mesh=None) -> dict[int, np.ndarray]:
    """The frontier's ``finetune`` family: zoo ``members`` (indices) trained further on a
    new data order; ``{m: f32[len(members), D]}`` after each ``m`` of ``steps``.

    One run per member reaches every ``m`` (snapshots every gcd of ``steps``), so the
    family costs max(steps) steps per member. Member i's data order comes from
    ``fold_in(key, i)``: none repeats the order the member was trained on.
    """
    steps = tuple(sorted(int(m) for m in steps))
    every = math.gcd(*steps)
    inputs, labels = evaluator.inputs["train"]
    out = {m: [] for m in steps}
    for i, member in enumerate(np.asarray(members)):
        base = jax.device_get(merge(zoo.base, unflatten_subset(zoo.vectors[member], zoo.spec)))
        seed = int(jax.random.randint(jax.random.fold_in(key, i), (), 0, 2**31 - 1))
        snaps = training.train_subset_snapshots(
            model_def, base, zoo.spec, zoo.split_point, inputs, labels,
            num_snapshots=steps[-1] // every, save_every=every, optimizer=optimizer, lr=lr,
            batch_size=batch_size, momentum=momentum, seed=seed, mesh=mesh,
            desc=f"frontier finetune {i + 1}/{len(members)}",
            batch_norm=training.batch_norm_mode(zoo.spec, zoo.split_point))
        for m in steps:
            out[m].append(snaps[m // every - 1])
    return {m: np.stack(v) for m, v in out.items()}
