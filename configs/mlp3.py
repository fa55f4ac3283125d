"""Entire-network generation: MLP-3 (784-50-25-10) on MNIST, K = 200 seeds.

Each zoo member is a whole network (40,785 numbers) trained from its own seed
and data order; the generator learns all of its parameters. The bundled MNIST
makes this run offline.

    python -m pdiff_jax.main --config configs/mlp3.py --workdir runs/mlp3
    python -m pdiff_jax.main --config configs/mlp3.py:cifar10 ...   # 3,072 inputs (TFDS cifar10)
"""

from pdiff_jax.default_config import get_config as default_config
from pdiff_jax.default_config import shrink_for_smoke


def get_config(arg=None):
    args = set((arg or "").split(",")) - {""}
    config = default_config()
    config.data.name = "cifar10" if "cifar10" in args else "mnist"
    config.model.name = "mlp3"
    zoo = config.zoo
    zoo.mode = "seed"
    zoo.selector = ".*"
    zoo.num_models = 200
    zoo.epochs = 1
    zoo.batch_size = 128
    zoo.optimizer = "sgd"
    zoo.lr = 0.05
    zoo.weight_decay = 0.0
    zoo.schedule = "constant"
    zoo.models_per_step = 50   # vmap over MLPs sharing a step measured ~2x faster than a loop
    config.generator.normalization.mode = "tensor"
    # Entire-network zoo: K independent networks, each to be reproduced -> the FC autoencoder
    # (per-coordinate output layer). One hidden layer of 256 (>= K, so the decoder can map
    # K latents to K arbitrary vectors). A latent of 4 x 4 = 16 numbers, which the diffusion
    # model can fit (at 64 its samples fell between zoo members, ~15 % accuracy); latent noise
    # 0.2 keeps the decoder good around each member. A high AE learning rate makes the
    # memorization ~3x faster (lr 1e-3 stayed at loss ~0.74 after 200 steps).
    ae = config.generator.autoencoder
    ae.model.update(kind="fc", hidden=(256,), latent_len=4, latent_channels=4,
                    latent_noise=0.2)
    ae.train.update(steps=1000, learning_rate=1e-2)
    config.generator.diffusion.train.update(steps=6000, learning_rate=3e-3)
    config.evaluate.train_examples = 10000
    if "smoke" in args:
        shrink_for_smoke(config)
        config.zoo.models_per_step = 4
    unknown = args - {"cifar10", "smoke"}
    if unknown:
        raise ValueError(f"unknown config arguments {sorted(unknown)}; use cifar10 and/or smoke")
    return config
