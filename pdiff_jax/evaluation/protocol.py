"""The p-diff evaluation protocol: how a group of models is summarized.

The paper reports, for the generated models, the test accuracy of the "best" one plus
the average and median test accuracy of all of them; and for the zoo ("original"),
the best test accuracy among the K trained models.

One defect of the original code is fixed here: it picked the "best" generated model
on the TEST set, which turns a noisy sample of 100 test accuracies into an optimistic
estimate. `summarize` picks the member with the best TRAINING accuracy and reports
its test accuracy. `original_summary` keeps the paper's definition of "original"
(best test accuracy of the zoo) so the headline row is comparable with the paper,
and also reports the train-selected zoo member when training accuracies are given.

All functions take accuracies as arrays of the same unit (fractions or percent);
`as_percent` converts once, so that every result downstream is in percent.
"""

from __future__ import annotations

import numpy as np

ACC_UNITS = ("auto", "fraction", "percent")


def as_percent(acc, unit: str = "auto") -> np.ndarray:
    """Accuracies f32[n] as percent (float64 copy).

    unit: 'fraction' (0..1, multiplied by 100), 'percent' (kept), or 'auto': fractions
    when every finite value lies in [0, 1]. 'auto' misreads a group of models that are
    all below 1 % accuracy, so the pipeline should pass the unit it knows.
    """
    if unit not in ACC_UNITS:
        raise ValueError(f"unit must be one of {ACC_UNITS}, got {unit!r}")
    a = np.asarray(acc, dtype=np.float64).reshape(-1)
    if unit == "auto":
        finite = a[np.isfinite(a)]
        unit = "fraction" if finite.size == 0 or finite.max() <= 1.0 else "percent"
    return a * 100.0 if unit == "fraction" else a.copy()


def _check_pair(train_acc, test_acc) -> tuple[np.ndarray, np.ndarray]:
    train = np.asarray(train_acc, dtype=np.float64).reshape(-1)
    test = np.asarray(test_acc, dtype=np.float64).reshape(-1)
    if train.shape != test.shape:
        raise ValueError(f"train_acc {train.shape} and test_acc {test.shape} differ in shape")
    if train.size == 0:
        raise ValueError("cannot summarize an empty group")
    return train, test


def select_by_train(train_acc) -> int:
    """Index of the member with the highest training accuracy.

    Ties go to the lowest index (np.argmax returns the first maximum). NaN training
    accuracies are never selected unless all are NaN (then index 0).
    """
    train = np.asarray(train_acc, dtype=np.float64).reshape(-1)
    if train.size == 0:
        raise ValueError("cannot select from an empty group")
    return int(np.argmax(np.where(np.isnan(train), -np.inf, train)))


def summarize(train_acc, test_acc) -> dict:
    """Summary of a group of n models (generated, or a baseline) by the paper's protocol.

    Args:
      train_acc: f32[n] training-set accuracy of each model.
      test_acc: f32[n] test-set accuracy of each model (same unit).

    Returns dict:
      best: test accuracy of the member with the best TRAINING accuracy (ties: lowest
        index) -- never selected on the test set;
      best_index, best_train: that member's index and training accuracy;
      avg, median, std, worst: statistics of test accuracy over all n members;
      oracle_best: max test accuracy (what test-set selection would report; shown
        only to expose the optimism of that choice);
      n: group size.
    """
    train, test = _check_pair(train_acc, test_acc)
    i = select_by_train(train)
    return {"best": float(test[i]), "best_index": i, "best_train": float(train[i]),
            **_spread(test), "oracle_best": float(np.max(test))}


def _spread(test: np.ndarray) -> dict:
    """avg, median, std, worst and n of a group's test accuracies."""
    return {"avg": float(np.mean(test)), "median": float(np.median(test)),
            "std": float(np.std(test)), "worst": float(np.min(test)), "n": int(test.size)}


def original_summary(test_acc, train_acc=None) -> dict:
    """Summary of the K zoo models, as the paper defines "original".

    Args:
      test_acc: f32[K] test accuracy of each zoo model.
      train_acc: optional f32[K]; if given, also reports `best_by_train`, the test
        accuracy of the zoo member with the best training accuracy -- the number that
        is selected the same way as p-diff's "best".

    Returns dict: best (max test accuracy: the paper's "original"), best_index, avg,
    median, std, worst, n, and optionally best_by_train, best_by_train_index.
    """
    test = np.asarray(test_acc, dtype=np.float64).reshape(-1)
    if test.size == 0:
        raise ValueError("cannot summarize an empty zoo")
    out = {"best": float(np.max(test)), "best_index": int(np.argmax(test)), **_spread(test)}
    if train_acc is not None:
        train, test = _check_pair(train_acc, test)
        i = select_by_train(train)
        out["best_by_train"] = float(test[i])
        out["best_by_train_index"] = i
    return out
