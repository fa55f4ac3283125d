"""Accuracy of many parameter sets at once, reusing a frozen head.

p-diff evaluates hundreds of parameter sets (generated, originals,
baselines) that differ only in a subset of the network. When the subset lies
in the tail, the activations entering the tail are the same for all of them:
``TailInputs`` computes them once, and ``ManyModelEvaluator`` runs only the
tail for each parameter set, many sets per compiled call.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from pdiff_jax.config.choices import VECTORIZE
from pdiff_jax.params.subset import ParamSpec, merge, unflatten_subset
from pdiff_jax.runtime import sharding


def _forward(variables, x, *, model_def, start=None, stop=None):
    return model_def.apply(variables, x, train=False, start=start, stop=stop)


@functools.cache
def _compiled_forward(model_def, stop):
    return jax.jit(functools.partial(_forward, model_def=model_def, stop=stop))


def compute_tail_inputs(model_def, variables: dict, x: np.ndarray, split: str | None, *,
                        batch_size: int = 1000, mesh=None, desc: str = "features") -> Any:
    """Activations entering split point ``split`` for every row of ``x`` (eval mode).

    Returns a pytree of host arrays with leading axis ``len(x)``; with
    ``split=None`` returns ``x`` itself (nothing to cache).
    """
    if split is None:
        return x
    mesh = mesh or sharding.make_mesh()
    fn = _compiled_forward(model_def, split)
    variables = sharding.replicate(variables, mesh)
    chunks = []
    for i in tqdm(range(0, len(x), batch_size), desc=desc, leave=False, mininterval=1.0):
        xb, n = sharding.pad_to_devices(x[i:i + batch_size], mesh)
        out = fn(variables, sharding.shard_batch(xb, mesh))
        chunks.append(jax.tree.map(lambda a, n=n: a[:n], sharding.to_host(out)))
    return jax.tree.map(lambda *a: np.concatenate(a), *chunks)


def _correct_many(vectors, base, inputs, labels, *, model_def, spec: ParamSpec, start,
                  vectorize: str):
    """bool[G, B]: which of B examples each of G parameter sets gets right."""

    def one(vector):
        variables = merge(base, unflatten_subset(vector, spec))
        logits = model_def.apply(variables, inputs, train=False, start=start)
        return jnp.argmax(logits, -1) == labels

    if vectorize == "vmap":
        return jax.vmap(one)(vectors)
    return jax.lax.map(one, vectors)


class ManyModelEvaluator:
    """Accuracy and wrong-prediction masks of many subset vectors on fixed data.

    Args:
      model_def: the architecture (``pdiff_jax.models.ModelDef``).
      base_variables: the full variables the subset vectors are merged into.
      spec: the ``ParamSpec`` of the subset.
      splits: ``{name: (x f32[N, H, W, C], y i32[N])}``, e.g. train and test.
      split_point: where to cut the network (``model_def.split_point_for``);
        ``None`` runs the whole network for every parameter set.
      vectorize: 'vmap' (one batched program) or 'map' (a loop inside one
        compiled call); which is faster depends on the architecture and device.
    """

    def __init__(self, model_def, base_variables: dict, spec: ParamSpec,
                 splits: dict[str, tuple[np.ndarray, np.ndarray]], *, split_point=None,
                 mesh=None, batch_size: int = 1000, models_per_call: int = 100,
                 vectorize: str = "vmap"):
        if vectorize not in VECTORIZE:
            raise ValueError(f"vectorize must be 'vmap' or 'map', not {vectorize!r}")
        self.spec = spec
        self.mesh = mesh or sharding.make_mesh()
        self.batch_size = sharding.round_batch(batch_size, self.mesh)
        self.models_per_call = models_per_call
        devices = self.mesh.devices.size
        # With several devices, vmapped groups are split along the model axis (each device
        # runs whole models on the whole batch); otherwise the examples are split.
        self.shard_models = vectorize == "vmap" and devices > 1 and models_per_call % devices == 0
        self.base = sharding.replicate(base_variables, self.mesh)
        self.inputs = {
            name: (compute_tail_inputs(model_def, base_variables, x, split_point,
                                       batch_size=self.batch_size, mesh=self.mesh,
                                       desc=f"features {name}"), np.asarray(y))
            for name, (x, y) in splits.items()
        }
        self._correct = jax.jit(functools.partial(
            _correct_many, model_def=model_def, spec=spec, start=split_point,
            vectorize=vectorize))

    def evaluate(self, vectors: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy in percent ``f32[n]`` and wrong predictions ``bool[n, N]`` on ``split``."""
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.spec.size:
            raise ValueError(f"expected vectors of shape [n, {self.spec.size}], got "
                             f"{vectors.shape}")
        inputs, labels = self.inputs[split]
        n_examples = len(labels)
        correct = np.zeros((len(vectors), n_examples), bool)
        # Minutes for a zoo of ConvNets (200 x 12,000 images: ~6 min at load 4): show it.
        bar = tqdm(total=len(vectors), desc=f"accuracy ({split})", leave=False, mininterval=2.0,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total} models [{elapsed}<{remaining}]")
        for m in range(0, len(vectors), self.models_per_call):
            group = vectors[m:m + self.models_per_call]
            real = len(group)
            if real < self.models_per_call and (len(vectors) > self.models_per_call
                                                or self.shard_models):
                # Pad the last group so the compiled call is reused, not retraced.
                group = np.concatenate([group, np.repeat(group[-1:], self.models_per_call - real,
                                                         axis=0)])
            place_models, place_data = ((sharding.shard_batch, sharding.replicate)
                                        if self.shard_models else
                                        (sharding.replicate, sharding.shard_batch))
            group = place_models(group, self.mesh)
            for i in range(0, n_examples, self.batch_size):
                stop = min(i + self.batch_size, n_examples)
                xb = jax.tree.map(lambda a, i=i, stop=stop: a[i:stop], inputs)
                yb = labels[i:stop]
                if stop - i < self.batch_size:   # pad to the compiled batch size
                    pad = self.batch_size - (stop - i)
                    xb = jax.tree.map(lambda a, pad=pad: np.concatenate(
                        [a, np.repeat(a[-1:], pad, axis=0)]), xb)
                    yb = np.concatenate([yb, np.repeat(yb[-1:], pad)])
                out = self._correct(group, self.base, place_data(xb, self.mesh),
                                    place_data(yb, self.mesh))
                correct[m:m + real, i:stop] = sharding.to_host(out)[:real, :stop - i]
                bar.update(real * (stop - i) / n_examples)
        bar.close()
        accuracy = 100.0 * correct.mean(axis=1, dtype=np.float64)
        return accuracy.astype(np.float32), ~correct


def make_evaluator(model_def, base, spec: ParamSpec, split_point, dataset, *, mesh=None,
                   train_examples: int = 0,
                   batch_size: int = 1000, models_per_call: int = 100,
                   vectorize: str = "vmap") -> ManyModelEvaluator:
    """The evaluator of a zoo's parameter sets (``base``/``spec``/``split_point`` as in
    ``Zoo``): the first ``train_examples`` training examples (0 = all) for selecting
    "best", the test set for reporting."""
    n_train = int(train_examples or 0) or len(dataset.y_train)
    return ManyModelEvaluator(
        model_def, base, spec,
        {"train": (dataset.x_train[:n_train], dataset.y_train[:n_train]),
         "test": (dataset.x_test, dataset.y_test)},
        split_point=split_point, mesh=mesh, batch_size=batch_size,
        models_per_call=models_per_call, vectorize=vectorize)
