"""The size ladder of entire-network generation: whole networks of growing size, K = 200 seeds.

Each rung is a seed zoo of one architecture on the bundled MNIST, aligned with
merge_many, and the entire-network generator of configs/mlp3.py. The rungs
below (by numbers generated, BatchNorm statistics included):

    convnet3      24,906   configs/convnet3.py:mnist
    cnn_bn        28,634   configs/size_ladder.py:cnn_bn
    mlp3          40,785   configs/mlp3.py
    resnet18_w8  177,602   configs/size_ladder.py:resnet18_w8   (ResNet-18, width 8, CIFAR stem, 32x32x3)

    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
    python -m pdiff_jax.main --config configs/size_ladder.py:cnn_bn --workdir runs/ladder-cnn_bn

Seed training follows the ConvNet-3 MNIST recipe (one pass over a few thousand
images, batch 32, SGD with a cosine schedule, two networks per compiled step);
the larger rung sees fewer images so that its zoo still collects in minutes on
a CPU. The evaluation is trimmed the same way (2,000 training images pick
"best", 20 draws per memorization baseline, no fine-tuning or t-SNE).
"""

from pdiff_jax.default_config import get_config as default_config
from pdiff_jax.default_config import shrink_for_smoke, use_entire_network_generator

# rung -> (model name, model kwargs, image size, channels, training images per network,
#          learning rate, test images). A ResNet-18 of width 8 costs ~7x a ConvNet-3 per
#          image on this CPU (8-channel convolutions vectorize poorly; 42 s per pair of
#          networks over 6,400 images at load 7.7), so it sees 3,200 images, and since every
#          stage evaluates hundreds of networks it is scored on 2,000 test images. After
#          6,400 images at lr 0.05 two seeds reach 96.35 / 96.80 % (lr 0.02: 94.40 / 95.50).
RUNGS = {
    "cnn_bn": ("cnn_bn", {}, 0, 0, 9600, 0.02, 0),
    "resnet18_w8": ("resnet18", {"width": 8, "stem": "cifar"}, 32, 3, 3200, 0.05, 2000),
}


def get_config(arg=None):
    args = set((arg or "").split(",")) - {""}
    rungs = args & set(RUNGS) or {"cnn_bn"}
    unknown = args - set(RUNGS) - {"smoke"}
    if len(rungs) != 1 or unknown:
        raise ValueError(f"configs/size_ladder.py takes one rung of {sorted(RUNGS)} (default "
                         f"cnn_bn) and optionally smoke, got {sorted(args)}; e.g. "
                         "--config configs/size_ladder.py:resnet18_w8")
    model, kwargs, image_size, channels, images, lr, test_images = RUNGS[rungs.pop()]
    config = default_config()
    config.data.update(name="mnist", image_size=image_size, channels=channels, max_train=images,
                       max_test=test_images)
    config.model.name = model
    config.model.kwargs = kwargs
    config.zoo.update(mode="seed", selector=".*", num_models=200, epochs=1, batch_size=32,
                      optimizer="sgd", lr=lr, momentum=0.9, weight_decay=5e-4,
                      schedule="cosine", models_per_step=2, stack="unrolled",
                      align="merge_many")
    use_entire_network_generator(config)
    config.evaluate.update(vectorize="map", train_examples=2000, num_baseline=20,
                           finetune_pairs=0, tsne=False, trajectories=0)
    if "smoke" in args:
        shrink_for_smoke(config)
        config.zoo.num_models = 4
    return config
