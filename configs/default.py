"""The built-in default: p-diff on bundled MNIST, last two BatchNorm layers of `cnn_bn`.

    python -m pdiff_jax.main --config configs/default.py --workdir runs/default
    python -m pdiff_jax.main --config configs/default.py:smoke --workdir /tmp/smoke
"""

from pdiff_jax.config.defaults import get_config, paper_ablations  # noqa: F401


def get_sweep(arg=None):
    """The paper's ablations (Tab. 2) for this config: see ``paper_ablations``."""
    del arg  # the same ablations for every variant of this config
    return paper_ablations()
