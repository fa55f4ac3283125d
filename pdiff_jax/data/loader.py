"""``load_dataset``: a named TFDS data set, the bundled MNIST, or a user's ``.npz``, preprocessed.

Every source goes through the same steps: pick a class-balanced seeded subset
(validation held out of the training set first), then u8 -> f32 on [0, 1],
channels, size (pad or resize) and per-channel normalization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os

import numpy as np

from pdiff_jax.data import preprocess, tfds_source
from pdiff_jax.data.catalog import DATASETS, DataFormatError, DataMissingError

log = logging.getLogger(__name__)

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# A lazily read (large) training set is subsampled from a random pool this many
# times the requested size, so only the pool's labels are read.
POOL_FACTOR = 4


# eq=False: comparing arrays field by field has no single truth value.
@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Preprocessed arrays of one data set (``x_*``: f32[N, H, W, C] normalized, ``y_*``: i32[N]).

    ``source`` says where the data came from (``'bundled'``, ``'tfds'`` or ``'npz'``);
    ``fingerprint`` identifies the exact examples and preprocessing, so artifacts
    made from it can check they match; ``mean``/``std`` are the per-channel
    statistics (on the [0, 1] scale) used for normalization.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str = "npz"
    fingerprint: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


class _ArraySplit:
    """A split held in memory."""

    lazy = False

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def labels(self, indices: np.ndarray) -> np.ndarray:
        return self.y[indices]

    def examples(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x[indices], self.y[indices]


class _LazySplit:
    """A split read by random access from TFDS (images resized as they are read)."""

    lazy = True

    def __init__(self, builder, split: str, image_size: int | None):
        self._images = tfds_source.open_split(builder, split)
        self._labels = tfds_source.open_split(builder, split, skip_images=True)
        self._image_size = image_size

    def __len__(self) -> int:
        return len(self._images)

    def labels(self, indices: np.ndarray) -> np.ndarray:
        return tfds_source.read_labels(self._labels, indices)

    def examples(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tfds_source.read_examples(self._images, indices, image_size=self._image_size)


def _is_npz(name) -> bool:
    return isinstance(name, os.PathLike) or str(name).endswith(".npz") or os.path.isfile(name)


def _read_npz(path) -> tuple[_ArraySplit, _ArraySplit, int]:
    if not os.path.isfile(path):
        raise DataMissingError(f"no such .npz file: {path}")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise DataFormatError(
                f"{path} lacks key(s) {missing}; a data set .npz needs {list(NPZ_KEYS)}"
                f" (found {f.files})"
            )
        arrays = {k: f[k] for k in NPZ_KEYS}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 3:
            x = arrays[f"x_{split}"] = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise DataFormatError(
                f"x_{split} has shape {x.shape}; expected [N, H, W] or [N, H, W, C], C in (1, 3)"
            )
        if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
            raise DataFormatError(f"x_{split} has dtype {x.dtype}; expected uint8 or floating")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataFormatError(f"y_{split} has shape {y.shape} dtype {y.dtype}; expected int[N]")
        if len(y) != len(x):
            raise DataFormatError(f"y_{split} has shape {y.shape} but x_{split} has {len(x)} rows")
        if len(y) and y.min() < 0:
            raise DataFormatError(f"y_{split} has negative labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataFormatError(
            f"x_train images have shape {arrays['x_train'].shape[1:]} but x_test images have "
            f"{arrays['x_test'].shape[1:]}"
        )
    num_classes = int(max(arrays["y_train"].max(initial=0), arrays["y_test"].max(initial=0))) + 1
    train = _ArraySplit(arrays["x_train"], arrays["y_train"].astype(np.int64))
    test = _ArraySplit(arrays["x_test"], arrays["y_test"].astype(np.int64))
    return train, test, num_classes


def _open_tfds(name: str, data_dir: str, image_size: int | None):
    """(train split, test split, catalog name, builder) for a catalog name."""
    if name == "mnist":
        builder = tfds_source.prepared_builder("mnist", data_dir)
        if builder is None:
            log.info("mnist: official TFDS copy not prepared in %s; using bundled MNIST", data_dir)
            name = "bundled_mnist"
        else:
            log.info("mnist: using the official TFDS copy in %s", data_dir)
    spec = DATASETS[name]
    if spec.image_shape is None and image_size is None:
        raise ValueError(f"{name} images differ in size: pass image_size")
    builder = tfds_source.require_builder(name, data_dir)
    splits = []
    for split in (spec.train_split, spec.test_split):
        if spec.image_shape is not None and tfds_source.split_fits_in_memory(builder, split):
            splits.append(_ArraySplit(*tfds_source.read_whole_split(name, data_dir, split)))
        else:
            # Only images of differing sizes are resized as they are read; fixed-size
            # ones go through `fit_size` like in-memory data (so 28 -> 32 still pads).
            read_size = image_size if spec.image_shape is None else None
            splits.append(_LazySplit(builder, split, read_size))
    return splits[0], splits[1], name, builder


def _select(split, *, n_val: int, n_max: int | None, num_classes: int, seed: int):
    """Seeded, class-balanced ``(val_indices, train_indices)`` into ``split``, disjoint."""
    total = len(split)
    if n_val == 0 and (n_max is None or n_max >= total):
        return np.zeros(0, np.int64), np.arange(total)
    pool = np.arange(total)
    if split.lazy and n_max is not None:
        # Read the labels of a random pool only, not of the whole (large) split.
        size = min(total, POOL_FACTOR * (n_max + n_val))
        pool = np.sort(np.random.default_rng([seed, 3]).permutation(total)[:size])
    labels = split.labels(pool)
    val = preprocess.balanced_subset(labels, n_val, num_classes=num_classes, seed=[seed, 0])
    if n_max is None:
        train = np.setdiff1d(np.arange(len(pool)), val)
    else:
        n_train = min(n_max, len(pool) - n_val)
        train = preprocess.balanced_subset(
            labels, n_train, num_classes=num_classes, seed=[seed, 1], exclude=val
        )
    return pool[val], pool[train]


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def load_dataset(
    name: str,
    *,
    data_dir=None,
    image_size: int | None = None,
    channels: int | None = None,
    val_examples: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load, subsample and preprocess a data set.

    Args:
      name: a key of ``DATASETS`` (``'mnist'`` uses the official TFDS copy when it is
        prepared in ``data_dir``, else the bundled one; ``'bundled_mnist'`` forces the
        bundled one), or the path of an ``.npz`` with ``x_train u8|f[N, H, W(, C)]``,
        ``y_train int[N]``, ``x_test``, ``y_test`` (floats taken as [0, 1]).
      data_dir: TFDS directory (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      image_size: output height = width. ``None`` keeps the native size; a growth of at
        most 4 pixels pads (28 -> 32), anything else resizes. Needed for data sets whose
        images differ in size (ImageNet-style: shorter side resized, centre crop).
      channels: 1 or 3 (``None`` keeps): gray is repeated, RGB becomes luma.
      val_examples: training examples held out (class-balanced) as validation.
      max_train, max_test: class-balanced seeded subsets of at most this many.
      seed: selects the subsets; same arguments give the same ``Dataset``.

    Returns:
      A :class:`Dataset` with f32[N, H, W, C] images normalized per channel.

    Raises:
      DataMissingError: the data set is not prepared in ``data_dir`` (says how to get it).
      ValueError: an unknown name.
      DataFormatError: a malformed ``.npz`` (names the key and shape).
    """
    if not isinstance(name, os.PathLike) and name in DATASETS:
        data_dir = tfds_source.resolve_data_dir(data_dir)
        train, test, resolved, builder = _open_tfds(name, data_dir, image_size)
        spec = DATASETS[resolved]
        num_classes, stats = spec.num_classes, (spec.mean, spec.std)
        source = "bundled" if resolved == "bundled_mnist" else "tfds"
        identity = tfds_source.builder_identity(builder)
    elif _is_npz(name):
        train, test, num_classes = _read_npz(name)
        source, identity, stats = "npz", _digest(train.x, train.y, test.x, test.y), None
        name = os.fspath(name)
    else:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(DATASETS)} or an .npz path")

    val_idx, train_idx = _select(
        train, n_val=val_examples, n_max=max_train, num_classes=num_classes, seed=seed
    )
    _, test_idx = _select(test, n_val=0, n_max=max_test, num_classes=num_classes, seed=seed + 1)
    raw = {
        "train": train.examples(train_idx),
        "val": train.examples(val_idx) if len(val_idx) else None,
        "test": test.examples(test_idx),
    }
    out_channels = channels or raw["train"][0].shape[-1]
    if stats is None or len(stats[0]) not in (1, out_channels):
        # No known statistics (a user's .npz, or RGB made gray): use the training images.
        x = preprocess.match_channels(preprocess.to_unit_float(raw["train"][0]), channels)
        stats = preprocess.channel_stats(x)
    mean = tuple(np.broadcast_to(np.asarray(stats[0]), (out_channels,)).tolist())
    std = tuple(np.broadcast_to(np.asarray(stats[1]), (out_channels,)).tolist())

    def finish(x):
        x = preprocess.fit_size(preprocess.to_unit_float(x), image_size)
        x = preprocess.match_channels(x, channels)
        return preprocess.normalize_(x, mean, std)

    arrays = {}
    for split, pair in raw.items():
        if pair is None:  # empty validation split, shaped like the training images
            shape = (0, *finish(raw["train"][0][:1]).shape[1:])
            arrays[split] = (np.zeros(shape, np.float32), np.zeros(0, np.int32))
        else:
            arrays[split] = (finish(pair[0]), pair[1].astype(np.int32))
    # What was read and how, not what it was called: 'mnist' served by the bundled
    # copy has the fingerprint of 'bundled_mnist'.
    settings = dict(
        identity=identity,
        image_size=image_size,
        channels=channels,
        val_examples=val_examples,
        max_train=max_train,
        max_test=max_test,
        seed=seed,
        mean=mean,
        std=std,
    )
    fingerprint = hashlib.sha256(
        (json.dumps(settings, sort_keys=True) + _digest(train_idx, val_idx, test_idx)).encode()
    ).hexdigest()[:16]
    log.info("loaded %s from %s: train %s", name, source, arrays["train"][0].shape)
    return Dataset(
        name=name,
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_val=arrays["val"][0],
        y_val=arrays["val"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        num_classes=num_classes,
        source=source,
        fingerprint=fingerprint,
        mean=mean,
        std=std,
    )
