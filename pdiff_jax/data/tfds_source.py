"""The one module that talks to TFDS: find a prepared data set and read examples.

Reading goes through TFDS data sources (``builder.as_data_source``, which is
what ``tfds.data_source`` calls: array_record, random access, no TensorFlow).
A data set prepared in TFDS's default TFRecord format is read with
``builder.as_dataset`` when TensorFlow is installed. Nothing here downloads: a
data set that is not prepared fails at once with :class:`DataMissingError`
(TFDS would otherwise try the network, which offline can take minutes).

``tensorflow_datasets`` is imported inside functions so that importing
``pdiff_jax.data`` stays cheap.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pdiff_jax.data.catalog import DATASETS, DataMissingError, how_to_obtain

log = logging.getLogger(__name__)

# Splits smaller than this (bytes on disk) are read whole and kept in memory.
IN_MEMORY_MAX_BYTES = 1 << 30
_READ_CHUNK = 2048


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    """``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


def import_tfds():
    """Import TFDS with every Google Cloud Storage lookup switched off."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import gcs_utils

    # Already off by default in tfds 4.9.10; forced anyway so that no TFDS release
    # with it on can reach for gs://tfds-data (dataset-info lookups retry for
    # minutes without a network).
    gcs_utils._is_gcs_disabled = True
    return tfds


def _random_access(builder) -> bool:
    tfds = import_tfds()
    formats = {builder.info.file_format, *builder.info.available_file_formats()}
    readable = {tfds.core.FileFormat.ARRAY_RECORD, tfds.core.FileFormat.PARQUET}
    return bool(formats & readable)


def _tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _is_prepared(builder) -> bool:
    """``builder.is_prepared()`` without its warning about a folder that does not exist.

    TFDS logs "Variant folder ... has no dataset_info.json" whenever the version
    folder lacks that file, including when the folder itself is absent, which is
    the normal state of a data set not prepared yet (e.g. the official MNIST when
    the bundled copy is used).
    """
    if not (Path(builder.data_path) / "dataset_info.json").is_file():
        return False
    return builder.is_prepared()


def prepared_builder(name: str, data_dir: str, *, strict: bool = False):
    """The builder of catalog entry ``name`` if it is prepared and readable in ``data_dir``.

    Otherwise ``None``, or with ``strict`` a :class:`DataMissingError` saying how to
    obtain it. Never downloads. ``bundled_mnist`` is built here on first use (a few
    seconds, no network).
    """
    tfds = import_tfds()
    spec = DATASETS[name]
    if spec.tfds_name == "bundled_mnist":
        from pdiff_jax.data.bundled_mnist import BundledMnist

        builder = BundledMnist(data_dir=data_dir, file_format="array_record")
        if not _is_prepared(builder):
            log.info("Building bundled MNIST as array_record in %s", data_dir)
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )
        return builder
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir, try_gcs=False)
    problem = None
    if not _is_prepared(builder):
        problem = how_to_obtain(name, data_dir)
    elif not _random_access(builder) and not _tensorflow_available():
        problem = (
            f"{name} is prepared in {builder.data_dir} as {builder.info.file_format.value}, "
            "which only TensorFlow can read. Either pip install 'pdiff_jax[tf]', or rebuild "
            f"it readable without TensorFlow:\n  tfds build {spec.tfds_name} "
            f"--data_dir {data_dir} --file_format array_record --overwrite"
        )
        log.warning(problem)
    if problem is None:
        return builder
    if strict:
        raise DataMissingError(problem)
    return None


def require_builder(name: str, data_dir: str):
    """The prepared builder of ``name``, else :class:`DataMissingError` (at once, offline)."""
    return prepared_builder(name, data_dir, strict=True)


class _TfDatasetSource:
    """Sequential fallback with the data-source interface, for TFRecord data (needs TF)."""

    def __init__(self, builder, split: str, decoders=None):
        self._builder, self._split, self._decoders = builder, split, decoders
        self._len = builder.info.splits[split].num_examples

    def __len__(self) -> int:
        return self._len

    def __getitems__(self, keys: Sequence[int]) -> list:
        tfds = import_tfds()
        wanted = {int(k): i for i, k in enumerate(keys)}
        out = [None] * len(keys)
        dataset = self._builder.as_dataset(
            split=self._split, shuffle_files=False, decoders=self._decoders
        )
        found = 0
        for index, example in enumerate(tfds.as_numpy(dataset)):
            if index in wanted:
                out[wanted[index]] = example
                found += 1
                if found == len(wanted):
                    break
        return out


def open_split(builder, split: str, *, skip_images: bool = False):
    """A random-access reader of one split: ``len(src)``, ``src.__getitems__(indices)``.

    Image features other than ``image`` (e.g. segmentation masks) are never decoded;
    ``image`` neither with ``skip_images`` (for reading labels).
    """
    tfds = import_tfds()
    features = builder.info.features
    skipped = [
        key
        for key, feature in features.items()
        if isinstance(feature, tfds.features.Image) and (key != "image" or skip_images)
    ]
    decoders = {key: tfds.decode.SkipDecoding() for key in skipped} or None
    if _random_access(builder):
        # What `tfds.data_source(name, split=..., download=False)` calls.
        return builder.as_data_source(split=split, decoders=decoders)
    return _TfDatasetSource(builder, split, decoders)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """u8[h, w, c] -> u8[size, size, c]: shorter side to ``size`` (bilinear), centre crop."""
    from PIL import Image

    h, w, c = image.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    pil = Image.fromarray(image[..., 0] if c == 1 else image)
    pil = pil.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = np.asarray(pil.crop((left, top, left + size, top + size)))
    return out.reshape(size, size, c)


def read_labels(source, indices: np.ndarray) -> np.ndarray:
    """i64[n] labels of ``indices`` (open ``source`` with ``skip_images=True``)."""
    labels = []
    for start in range(0, len(indices), _READ_CHUNK):
        chunk = [int(i) for i in indices[start : start + _READ_CHUNK]]
        labels.extend(int(e["label"]) for e in source.__getitems__(chunk))
    return np.asarray(labels, np.int64)


def read_examples(
    source, indices: np.ndarray, *, image_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``u8[n, H, W, C], i64[n]`` for ``indices``; resized per image when ``image_size`` is set."""
    images, labels = [], []
    for start in range(0, len(indices), _READ_CHUNK):
        chunk = [int(i) for i in indices[start : start + _READ_CHUNK]]
        for example in source.__getitems__(chunk):
            image = np.asarray(example["image"])
            if image.ndim == 2:
                image = image[..., None]
            if image_size is not None and image.shape[:2] != (image_size, image_size):
                image = resize_image(image, image_size)
            images.append(image)
            labels.append(int(example["label"]))
    if not images:
        raise ValueError("no examples selected")
    return np.stack(images), np.asarray(labels, np.int64)


@functools.lru_cache(maxsize=4)
def read_whole_split(name: str, data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All of a small split in memory: ``u8[N, H, W, C], i64[N]`` (cached, read-only)."""
    builder = require_builder(name, data_dir)
    source = open_split(builder, split)
    images, labels = read_examples(source, np.arange(len(source)), image_size=None)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def split_fits_in_memory(builder, split: str) -> bool:
    return builder.info.splits[split].num_bytes <= IN_MEMORY_MAX_BYTES


def builder_identity(builder) -> str:
    return f"{builder.name}:{builder.version}"
