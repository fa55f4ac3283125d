"""Data for training the model zoo: TFDS data sets, a bundled MNIST, or a user's ``.npz``.

    from pdiff_jax.data import load_dataset, iterate_batches
    ds = load_dataset("mnist", image_size=32, channels=3, val_examples=5000)
    for x, y in iterate_batches(ds.x_train, ds.y_train, 128, seed=0, epoch=0):
        ...

Importing this package is cheap: TFDS is imported only when a TFDS data set is
loaded, and TensorFlow never (array_record files are read without it).
"""

from pdiff_jax.data.batches import iterate_batches
from pdiff_jax.data.catalog import DATASETS, DataFormatError, DataMissingError, DatasetSpec
from pdiff_jax.data.loader import Dataset, load_dataset

__all__ = [
    "DATASETS",
    "DataFormatError",
    "DataMissingError",
    "Dataset",
    "DatasetSpec",
    "iterate_batches",
    "load_dataset",
]
