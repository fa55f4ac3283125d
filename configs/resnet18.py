"""The paper's default: ResNet-18 on CIFAR-100 (TFDS), last two BatchNorm layers, K = 200.

Recipe (paper Tab. 13 and the authors' code): SGD lr 0.1, momentum 0.9,
weight decay 5e-4, 30 epochs with x0.1 steps at epochs 10 and 20, then only
`layer4_1/bn1` and `layer4_1/bn2` (2,048 numbers) keep training, one
snapshot per iteration. Autoencoder and diffusion: AdamW lr 1e-3, weight
decay 2e-6, 30,000 iterations each, batch 200, EMA 0.9999.

    python -m pdiff_jax.main --config configs/resnet18.py --workdir runs/resnet18
    python -m pdiff_jax.main --config configs/resnet18.py:cifar10 ...
    python -m pdiff_jax.main --config configs/resnet18.py:smoke ...   # seconds, CIFAR-shaped bundled MNIST
    python -m pdiff_jax.main --config configs/resnet18.py:mnist ...   # the full recipe, offline
    python launch/sweep.py configs/resnet18.py --workdir runs/ablations   # the paper's ablations

Needs CIFAR-100 prepared for TFDS (`pip install 'pdiff_jax[tf]'`, then
`tfds build cifar100`); a GPU is strongly advised (one epoch on a 2-core CPU
takes ~30 minutes).
"""

from pdiff_jax.config.defaults import get_config as default_config
from pdiff_jax.config.defaults import paper_ablations, shrink_for_smoke


def get_config(arg=None):
    args = set((arg or "").split(",")) - {""}
    config = default_config()
    config.data.name = "cifar10" if "cifar10" in args else "cifar100"
    config.model.name = "resnet18"
    config.model.kwargs = {"stem": "cifar"}

    zoo = config.zoo
    zoo.epochs = 30
    zoo.batch_size = 128
    zoo.optimizer = "sgd"
    zoo.lr = 0.1
    zoo.momentum = 0.9
    zoo.weight_decay = 5e-4
    zoo.schedule = "step"
    zoo.milestones = (1 / 3, 2 / 3)
    zoo.augment = "crop_flip"
    zoo.num_models = 200
    zoo.save_every = 1
    zoo.subset_lr = 0.001
    zoo.subset_batch_size = 200

    gen = config.generator
    gen.autoencoder.train.steps = 30000
    gen.diffusion.train.steps = 30000
    gen.autoencoder.train.batch_size = 200
    gen.diffusion.train.batch_size = 200

    config.evaluate.train_examples = 0   # select the best model on the whole training set
    config.evaluate.vectorize = "map"    # per-model convs in the tail: a loop beats vmap
    if "mnist" in args or "smoke" in args:
        # The bundled MNIST padded to 32x32x3 (60,000 training images, like CIFAR's 50,000):
        # the whole recipe offline, augmentation included (benchmarks/gpu.sh times it).
        config.data.name = "mnist"
        config.data.image_size = 32
        config.data.channels = 3
    if "smoke" in args:
        config.zoo.augment = ""
        shrink_for_smoke(config)
        config.data.max_train = 500
        config.data.max_test = 200
        config.model.kwargs = {"stem": "cifar", "width": 8}
    unknown = args - {"cifar10", "mnist", "smoke"}
    if unknown:
        raise ValueError(f"unknown config arguments {sorted(unknown)}; use cifar10, mnist "
                         "and/or smoke")
    return config


def get_sweep(arg=None):
    """The paper's ablations (Tab. 2) for this config: see ``paper_ablations``."""
    del arg  # the same ablations for every variant of this config
    return paper_ablations()
