"""The built-in default: p-diff on bundled MNIST, last two BatchNorm layers of `cnn_bn`.

    python -m pdiff_jax.main --config configs/default.py --workdir runs/default
    python -m pdiff_jax.main --config configs/default.py:smoke --workdir /tmp/smoke
"""

from pdiff_jax.default_config import get_config  # noqa: F401


def get_sweep(arg=None):
    """The paper's ablations as runs: ``{run name: {dotted config key: value}}``.

    Each run is this config (with ``arg``) plus its overrides; expand and launch
    them with ``python launch/sweep.py configs/default.py``. Groups: the number
    of models K, the autoencoder's input/latent noise, its normalization layer.
    """
    del arg  # the same ablations for every variant of this config
    ae = "generator.autoencoder.model"
    runs = {f"k{k}": {"zoo.num_models": k} for k in (1, 10, 50, 200, 500)}
    for name, (inp, lat) in {"both": (1e-3, 0.1), "input_only": (1e-3, 0.0),
                             "latent_only": (0.0, 0.1), "none": (0.0, 0.0)}.items():
        runs[f"noise_{name}"] = {f"{ae}.input_noise": inp, f"{ae}.latent_noise": lat}
    for norm in ("instance", "group", "batch", "none"):
        runs[f"norm_{norm}"] = {f"{ae}.norm": norm}
    return runs
