"""pdiff_jax: neural network parameter diffusion (p-diff) in JAX/Flax.

Importing the package is cheap: no TensorFlow import and no JAX backend
start-up. The public functions are loaded on first use.

    import pdiff_jax
    run = pdiff_jax.load("runs/default")
    out = run.sample(jax.random.key(0), n=100)     # out.vectors f32[100, D], out.variables
    run.accuracy(out.vectors)                      # test accuracy of each, in percent

The data flow, one module each:

    data/ -> models/ -> collect.py (zoo.py: the Zoo artifact) -> subset.py (flatten)
      -> generator/stages.py: autoencoder.py (+ normalize.py) -> denoiser.py + diffusion.py
      -> generator/trained.py: sample -> decode -> subset.merge
      -> evaluation/: evaluator.py, groups.py (+ baselines.py, finetune.py), novelty.py,
         protocol.py -> render.py: report.py, plots.py
    pipeline.py ties the stages together (artifacts.py: the workdir layout;
    training.py + train_loop.py: every training loop; main.py: the command line).
"""

import importlib

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily by __getattr__.
_PUBLIC = {
    "load": "pdiff_jax.api",
    "sample": "pdiff_jax.api",
    "evaluate": "pdiff_jax.api",
    "TrainedRun": "pdiff_jax.api",
    "run_pipeline": "pdiff_jax.pipeline",
    "ParamSpec": "pdiff_jax.subset",
    "flatten_subset": "pdiff_jax.subset",
    "unflatten_subset": "pdiff_jax.subset",
    "merge": "pdiff_jax.subset",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'pdiff_jax' has no attribute {name!r}")
