"""BatchNorm statistics recomputed from data, for networks that were not trained with them.

A generated (or averaged, or perturbed) network carries running means and variances that
were generated with its weights. A small error in the weights before a BatchNorm moves the
statistics of that layer's inputs away from the stored ones, and the error compounds
through the network. One forward pass in training mode over a batch of training images
gives every BatchNorm the statistics of its actual inputs (each layer normalized with the
statistics of the layers before it, as they are now); the network is then evaluated in
inference mode as usual. Only training images are used, never test images.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.params.spec import STATISTICS as COLLECTION
from pdiff_jax.params.spec import is_statistic
from pdiff_jax.params.subset import ParamSpec, flatten_subset, merge, unflatten_subset


def recompute_batch_stats(model_def, variables: dict, images) -> dict:
    """``variables`` with every BatchNorm's running mean and variance replaced by the
    statistics of its inputs when the network runs on ``images`` f32[B, H, W, C].

    Networks without BatchNorm come back unchanged.
    """
    stats = variables.get(COLLECTION)
    if not stats:
        return variables

    def updated_from(fill: float):
        start = jax.tree.map(lambda a: jnp.full_like(a, fill), stats)
        _, updates = model_def.apply({**variables, COLLECTION: start}, images, train=True)
        return updates[COLLECTION]

    # Linen updates new = m * old + (1 - m) * batch_statistic elementwise; the forward pass
    # itself ignores `old` in training mode. Two starts (0 and 1) give m and the statistic
    # without assuming any layer's momentum.
    from_zero, from_one = updated_from(0.0), updated_from(1.0)
    fresh = jax.tree.map(lambda z, o: z / (1.0 - (o - z)), from_zero, from_one)
    return {**variables, COLLECTION: fresh}


def touches_batch_stats(spec: ParamSpec) -> bool:
    """Whether the vectors of ``spec`` hold running statistics (e.g. an entire network)."""
    return any(map(is_statistic, spec.names))


def require_batch_stats(spec: ParamSpec) -> None:
    """Raise ``ValueError`` unless the vectors of ``spec`` hold running statistics."""
    if not touches_batch_stats(spec):
        raise ValueError(f"the parameter vectors hold no {COLLECTION} (their variables: "
                         f"{', '.join(spec.names[:3])}, ...): recomputing BatchNorm statistics "
                         "needs vectors of an entire BatchNorm network (zoo.mode='seed')")


@functools.cache
def _compiled_recompute(model_def, spec: ParamSpec):
    def one(base, vector, images):
        variables = merge(base, unflatten_subset(vector, spec))
        return flatten_subset(recompute_batch_stats(model_def, variables, images), spec)

    # lax.map: one network's activations at a time (a vmap over many ConvNets on a
    # thousand images would hold gigabytes of them).
    return jax.jit(lambda base, vectors, images: jax.lax.map(
        lambda v: one(base, v, images), vectors))


def recompute_in_vectors(model_def, base: dict, spec: ParamSpec, vectors,
                         images) -> np.ndarray:
    """``vectors`` f32[n, D] (parameter sets of ``spec`` merged into ``base``) with their
    running statistics recomputed on ``images``; other numbers unchanged.

    Raises ``ValueError`` when ``spec`` holds no running statistics: there is nothing
    to recompute (a subset of scales and biases, or a network without BatchNorm).
    """
    require_batch_stats(spec)
    vectors = np.asarray(vectors, np.float32)
    out = _compiled_recompute(model_def, spec)(base, vectors, jnp.asarray(images, jnp.float32))
    return np.asarray(out)


class RecomputedStatsEvaluator:
    """An evaluator (``ManyModelEvaluator``'s ``evaluate`` and ``inputs``) that measures
    every parameter set with its running statistics recomputed on ``images`` first.

    The evaluate stage wraps its evaluator in this when ``evaluate.recompute_batch_stats``
    is set, so that every group (originals, generated, baselines) is measured alike.
    Only accuracies change: distances in parameter space (NN L2) still compare the vectors
    as they were generated.
    """

    def __init__(self, evaluator, model_def, base: dict, spec: ParamSpec, images):
        require_batch_stats(spec)
        self.evaluator, self.model_def, self.base, self.spec = evaluator, model_def, base, spec
        self.images = np.asarray(images, np.float32)
        self._last: tuple = (None, None)   # measure() asks for train, then test, of one array

    @property
    def inputs(self):
        return self.evaluator.inputs

    def recomputed(self, vectors) -> np.ndarray:
        if self._last[0] is not vectors:
            self._last = (vectors, recompute_in_vectors(self.model_def, self.base, self.spec,
                                                        vectors, self.images))
        return self._last[1]

    def evaluate(self, vectors, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.evaluator.evaluate(self.recomputed(vectors), split)
