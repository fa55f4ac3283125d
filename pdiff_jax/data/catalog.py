"""The data sets the library knows: TFDS names, splits, shapes and channel statistics.

Plain data, no TFDS import: ``DATASETS`` is cheap to read (e.g. to list choices
in a config or a command-line flag).
"""

from __future__ import annotations

import dataclasses

from pdiff_jax.errors import UserError

# Channel statistics on the [0, 1] scale, computed on each training set.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class DataMissingError(RuntimeError, UserError):
    """A data set is not available locally; the message says how to obtain it."""


class DataFormatError(ValueError, UserError):
    """A user's data file (``.npz``) is malformed; the message names the key and shape."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to read one data set through TFDS.

    Attributes:
      tfds_name: the TFDS builder name.
      num_classes: number of labels.
      image_shape: native ``(H, W, C)``, or ``None`` where images differ in size
        (then ``load_dataset`` needs ``image_size``: shorter side resized, centre crop).
      mean, std: per-channel statistics on the [0, 1] scale used for normalization.
      train_split, test_split: TFDS split names (some sets label only ``validation``).
      manual_dir: the raw files must be downloaded by hand (ImageNet).
      style: ``'cifar'`` (small images, CIFAR-style networks) or ``'imagenet'``.
    """

    tfds_name: str
    num_classes: int
    image_shape: tuple[int, int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_split: str = "train"
    test_split: str = "test"
    manual_dir: bool = False
    style: str = "cifar"


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", 10, (28, 28, 1), (0.1307,), (0.3081,)),
    # The same MNIST, shipped inside the package and built by a TensorFlow-free builder.
    "bundled_mnist": DatasetSpec("bundled_mnist", 10, (28, 28, 1), (0.1307,), (0.3081,)),
    "fashion_mnist": DatasetSpec("fashion_mnist", 10, (28, 28, 1), (0.2860,), (0.3530,)),
    "cifar10": DatasetSpec(
        "cifar10", 10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ),
    "cifar100": DatasetSpec(
        "cifar100", 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    ),
    "stl10": DatasetSpec(
        "stl10", 10, (96, 96, 3), (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)
    ),
    "oxford_flowers102": DatasetSpec(
        "oxford_flowers102", 102, None, _IMAGENET_MEAN, _IMAGENET_STD, style="imagenet"
    ),
    "oxford_iiit_pet": DatasetSpec(
        "oxford_iiit_pet", 37, None, _IMAGENET_MEAN, _IMAGENET_STD, style="imagenet"
    ),
    "food101": DatasetSpec(
        "food101",
        101,
        None,
        _IMAGENET_MEAN,
        _IMAGENET_STD,
        test_split="validation",
        style="imagenet",
    ),
    "imagenet2012": DatasetSpec(
        "imagenet2012",
        1000,
        None,
        _IMAGENET_MEAN,
        _IMAGENET_STD,
        test_split="validation",
        manual_dir=True,
        style="imagenet",
    ),
}


def how_to_obtain(name: str, data_dir: str) -> str:
    """Instructions for preparing ``name`` in ``data_dir`` (used in error messages)."""
    spec = DATASETS[name]
    steps = [
        f"Data set {name!r} (TFDS {spec.tfds_name!r}) is not prepared in {data_dir}.",
        "To obtain it (needs internet once), run:",
        "  pip install 'pdiff_jax[tf]'",
    ]
    if spec.manual_dir:
        steps.append(
            "  download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from "
            f"https://image-net.org, after accepting its terms) into {data_dir}/downloads/manual"
        )
    steps.append(f"  tfds build {spec.tfds_name} --data_dir {data_dir} --file_format array_record")
    steps.append(
        "array_record files are read without TensorFlow; pass data_dir= or set "
        "TFDS_DATA_DIR if they live elsewhere."
    )
    if name == "mnist":
        steps.append("For MNIST the bundled copy 'bundled_mnist' needs no download.")
    return "\n".join(steps)
