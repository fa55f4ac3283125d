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
    ... --config configs/size_ladder.py:cnn_bn,label_term   # the decoder also learns the labels

Each rung is configs/convnet3.py:mnist (its seed recipe: one pass over a few
thousand images, batch 32, SGD with a cosine schedule, two networks per compiled
step; its generator and evaluation, BatchNorm statistics recomputed) with another model;
the larger rung sees fewer images so that its zoo still collects in minutes on
a CPU. The evaluation is trimmed the same way (2,000 training images pick
"best", no fine-tuning of nearest neighbours or t-SNE; every group, baselines and
frontier points included, gets as many draws as p-diff).
"""

from pathlib import Path

from pdiff_jax.config.defaults import config_file, shrink_for_smoke

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
    unknown = args - set(RUNGS) - {"smoke", "label_term"}
    if len(rungs) != 1 or unknown:
        raise ValueError(f"configs/size_ladder.py takes one rung of {sorted(RUNGS)} (default "
                         f"cnn_bn) and optionally smoke and label_term, got {sorted(args)}; "
                         "e.g. --config configs/size_ladder.py:resnet18_w8")
    model, kwargs, image_size, channels, images, lr, test_images = RUNGS[rungs.pop()]
    config = config_file(Path(__file__).with_name("convnet3.py"),
                         "mnist,label_term" if "label_term" in args else "mnist")
    config.data.update(image_size=image_size, channels=channels, max_train=images,
                       max_test=test_images)
    config.model.name = model
    config.model.kwargs = kwargs
    config.zoo.lr = lr
    config.evaluate.update(finetune_pairs=0, tsne=False, trajectories=0)
    if "smoke" in args:
        shrink_for_smoke(config)
        config.zoo.num_models = 4
    return config
