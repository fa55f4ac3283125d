"""Entire-network generation: MLP-3 (784-50-25-10) on MNIST, K = 200 seeds.

Each zoo member is a whole network (40,785 numbers) trained from its own seed
and data order; the generator learns all of its parameters. The bundled MNIST
makes this run offline.

    python -m pdiff_jax.main --config configs/mlp3.py --workdir runs/mlp3
    python -m pdiff_jax.main --config configs/mlp3.py:cifar10 ...   # 3,072 inputs (TFDS cifar10)
"""

from pdiff_jax.config.defaults import get_config as default_config
from pdiff_jax.config.defaults import shrink_for_smoke, use_entire_network_generator


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
    # Independent seeds differ by hidden-unit permutations; aligning them (same functions)
    # gives the generator one mode to learn. merge_many: average of 16 members 94.0 % (to
    # member 0 only: 91.7 %), so what a generator blends is a working network too.
    zoo.align = "merge_many"
    use_entire_network_generator(config)
    # The decoder also learns the task (generator.autoencoder.behaviour, target 'labels'):
    # networks decoded near members' latents and near mixes of two (a ~ U(0, 0.5)) are
    # trained on 128 of 8,192 labelled training images a step, 32 batch rows at a time. On
    # two zoo seeds the margin over interpolation rose from +0.09 / +0.05 to +0.64 / +0.32
    # (noise +0.48 / +0.53 -> +1.29 / +1.03; 16 rows: +0.53 / +0.25 at ~60 % of the cost;
    # results/frontier-mnist.md, session 4), for 3-8x the autoencoder's time. Fine-tuned
    # members are still better: the labels are what fine-tuning spends too.
    config.generator.autoencoder.behaviour.update(
        weight=1.0, target="labels", mix=0.5, images=8192, images_per_step=128)
    config.evaluate.train_examples = 10000
    if "smoke" in args:
        shrink_for_smoke(config)
        config.zoo.models_per_step = 4
    unknown = args - {"cifar10", "smoke"}
    if unknown:
        raise ValueError(f"unknown config arguments {sorted(unknown)}; use cifar10 and/or smoke")
    return config
