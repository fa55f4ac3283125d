"""The notebook API: load a trained generator, sample ready-to-use parameters, evaluate them.

    import jax, pdiff_jax
    out = pdiff_jax.sample(jax.random.key(0), n=100, workdir="runs/default")
    out.vectors              # f32[100, D]: the generated subsets
    out.variables            # full variables, stacked on a leading axis of 100
    logits = jax.vmap(lambda v: model.apply(v, x))(out.variables)

Nothing here reads absl flags, so it works in a notebook as it is.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pdiff_jax import artifacts
from pdiff_jax.checkpoint import CheckpointError, read_json

TRAIN_HINT = ("train one with `python -m pdiff_jax.main --workdir {workdir}` (optionally "
              "--config configs/NAME.py), or pdiff_jax.pipeline.run_pipeline(config, workdir)")


@dataclasses.dataclass
class Samples:
    vectors: np.ndarray   # f32[n, D]: generated subset vectors
    variables: Any        # full variables, every leaf stacked on a leading axis of n


@dataclasses.dataclass
class Generator:
    """A trained generator together with the zoo it learned from.

    ``encode``/``decode`` map subset vectors ``f32[n, D]`` to latents and back;
    ``sample`` draws new parameter sets; ``model_def`` is the architecture.
    """

    workdir: Path
    generator: Any     # pdiff_jax.generator.Generator
    zoo: Any           # pdiff_jax.zoo.Zoo
    model_def: Any

    def encode(self, vectors):
        return self.generator.encode(vectors)

    def decode(self, latents):
        return self.generator.decode(latents)

    def sample(self, key, n: int = 100, *, sampler: str = "ddpm", steps: int | None = None
               ) -> Samples:
        """``n`` new parameter sets: subset vectors and full variables (a pure function of key)."""
        from pdiff_jax.subset import merge, unflatten_subset

        if not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"n must be a positive number of parameter sets, got {n!r}")
        vectors = np.asarray(self.generator.sample(key, int(n), sampler=sampler, steps=steps))
        spec = self.zoo.spec
        stacked = jax.vmap(lambda v: merge(self.zoo.base, unflatten_subset(v, spec)))(vectors)
        return Samples(vectors, jax.device_get(stacked))


def load(workdir: str | os.PathLike) -> Generator:
    """The trained generator in ``workdir`` (from ``python -m pdiff_jax.main``)."""
    import ml_collections

    from pdiff_jax.generator import load_generator
    from pdiff_jax.models import get_model
    from pdiff_jax.zoo import load_zoo

    workdir = Path(workdir)
    hint = TRAIN_HINT.format(workdir=workdir)
    if not (workdir / "config.json").exists() or not artifacts.exists(workdir / "zoo"):
        raise CheckpointError(f"no trained p-diff run in {workdir}: {hint}")
    try:
        generator = load_generator(workdir / "generator")
    except CheckpointError as e:
        raise CheckpointError(f"{e}\nNo trained generator in {workdir}: {hint}") from e
    config = ml_collections.ConfigDict(read_json(workdir / "config.json"))
    zoo = load_zoo(workdir / "zoo")
    generator.check_compatible(zoo.spec.size, vectors=zoo.vectors)
    model_def = get_model(config.model.name, num_classes=int(zoo.meta["num_classes"]),
                          input_shape=tuple(zoo.meta["input_shape"]), **dict(config.model.kwargs))
    return Generator(workdir, generator, zoo, model_def)


def sample(key, n: int = 100, *, workdir: str | os.PathLike = "runs/default",
           sampler: str = "ddpm", steps: int | None = None) -> Samples:
    """``n`` generated parameter sets from the run in ``workdir`` (see :class:`Samples`)."""
    return load(workdir).sample(key, n, sampler=sampler, steps=steps)


def evaluate(workdir: str | os.PathLike = "runs/default") -> dict:
    """Run (or reuse) the sample, evaluation and report stages of ``workdir``.

    Returns the contents of ``results.json``.
    """
    import ml_collections

    from pdiff_jax.pipeline import run_pipeline

    workdir = Path(workdir)
    if not (workdir / "config.json").exists():
        raise CheckpointError(f"no p-diff run in {workdir}: {TRAIN_HINT.format(workdir=workdir)}")
    config = ml_collections.ConfigDict(read_json(workdir / "config.json"))
    run_pipeline(config, workdir, stages=["sample", "evaluate", "report"])
    return read_json(workdir / "results.json")
