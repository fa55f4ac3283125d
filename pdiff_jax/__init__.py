"""pdiff_jax: neural network parameter diffusion (p-diff) in JAX/Flax.

Importing the package is cheap: no TensorFlow import and no JAX backend
start-up. The public functions are loaded on first use.

    import pdiff_jax
    run = pdiff_jax.load("runs/default")
    out = run.sample(jax.random.key(0), n=100)     # out.vectors f32[100, D], out.variables
    run.accuracy(out.vectors)                      # test accuracy of each, in percent

The packages, in the order data flows through them:

    data/ -> models/ -> zoo/ (collect, align; the Zoo artifact) -> params/ (flatten)
      -> generator/ (normalize, autoencoder, latent prior: diffusion or a fit; sample,
         decode) -> evaluation/ (evaluator, groups, baselines, novelty, report)
    config/ (defaults, allowed values, checks), runtime/ (mesh, training loop,
    checkpoints), suites/ (named experiments); pipeline.py ties the stages together
    over one run.Run, main.py is the command line, api.py the notebook API.
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
    "open_run": "pdiff_jax.run",
    "ParamSpec": "pdiff_jax.params.subset",
    "flatten_subset": "pdiff_jax.params.subset",
    "unflatten_subset": "pdiff_jax.params.subset",
    "merge": "pdiff_jax.params.subset",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'pdiff_jax' has no attribute {name!r}")
