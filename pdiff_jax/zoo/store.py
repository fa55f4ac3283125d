"""The zoo: the parameter sets the generator learns from, and their storage.

A ``Zoo`` is what the collect stage produces (see ``collect.py``): the base
variables the subset vectors are merged into, the stacked vectors ``f32[K, D]``,
their ``ParamSpec``, the split point of the frozen head, per-model accuracies and
the identity of the data set. It is stored as one artifact (``artifacts.ZOO``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pdiff_jax import artifacts
from pdiff_jax.params.subset import ParamSpec


@dataclasses.dataclass
class Zoo:
    base: dict             # full variables the subset vectors are merged into
    vectors: np.ndarray    # f32[K, D]
    spec: ParamSpec
    split_point: str | None
    train_acc: np.ndarray  # f32[K], percent
    test_acc: np.ndarray   # f32[K], percent
    meta: dict             # mode, model, model kwargs, data set identity, settings

    @property
    def num_models(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def segments(self) -> list[int]:
        """Sizes of the subset's tensors in flattening order (they sum to D)."""
        return self.spec.segments


def save_zoo(path: Path, zoo: Zoo, seconds: float | None = None) -> None:
    arrays = {"base": zoo.base, "vectors": zoo.vectors, "train_acc": zoo.train_acc,
              "test_acc": zoo.test_acc}
    meta = dict(zoo.meta, spec=zoo.spec.to_json(), split_point=zoo.split_point)
    if seconds is not None:
        meta["seconds"] = seconds
    artifacts.save_artifact(path, arrays, meta)


def load_zoo(path: Path) -> Zoo:
    arrays, meta = artifacts.load_artifact(path, what="zoo",
                                           hint="run the 'collect' stage to build it")
    spec = ParamSpec.from_json(meta.pop("spec"))
    split_point = meta.pop("split_point")
    return Zoo(arrays["base"], arrays["vectors"], spec, split_point, arrays["train_acc"],
               arrays["test_acc"], meta)


def dataset_identity(dataset) -> dict:
    return dict(name=dataset.name, train=len(dataset.y_train), test=len(dataset.y_test),
                fingerprint=getattr(dataset, "fingerprint", ""))
