"""pdiff_jax: neural network parameter diffusion (p-diff) in JAX/Flax.

Importing the package is cheap: no TensorFlow import and no JAX backend
start-up. The public functions are loaded on first use.

    import pdiff_jax
    gen = pdiff_jax.load("runs/default")
    params = pdiff_jax.sample(jax.random.key(0), n=100, workdir="runs/default")
"""

import importlib

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily by __getattr__.
_PUBLIC = {
    "load": "pdiff_jax.api",
    "sample": "pdiff_jax.api",
    "evaluate": "pdiff_jax.api",
    "Generator": "pdiff_jax.api",
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
