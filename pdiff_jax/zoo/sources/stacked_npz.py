"""An ``.npz`` of stacked parameter vectors, with its ``ParamSpec`` JSON beside it.

    zoo.npz     vectors   f[K, D]  one whole network per row
                test_acc  f[K]     optional: each network's test accuracy in percent
    zoo.json    ParamSpec.to_json() of the rows: names, shapes, dtypes (and size)

The JSON names every variable of the run's model (``model.name``/``model.kwargs`` for
the run's data) with its shape, in any order: the columns are reordered to the run's
spec. A zoo of this library exports as ``np.savez(p, vectors=zoo.vectors,
test_acc=zoo.test_acc)`` and ``zoo.spec.to_json()`` when its spec is the whole
network (a seed zoo). With more than ``zoo.num_models`` rows a seeded draw chooses which.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from pdiff_jax.params.subset import ParamSpec, SubsetError
from pdiff_jax.zoo.sources.imported import (
    ImportedZoo,
    ZooSourceError,
    check_finite,
    choose_members,
    column_order,
)

VECTORS, TEST_ACC = "vectors", "test_acc"
NAN_FIX = "remove those rows from the .npz"


def spec_file(npz: Path) -> Path:
    """The ParamSpec JSON of ``npz``: the same name with '.json' ('zoo.npz' -> 'zoo.json')."""
    return npz.with_suffix(".json")


def _read(npz: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(npz, allow_pickle=False) as f:
            if VECTORS not in f.files:
                raise ZooSourceError(f"zoo.source: {npz} has no array {VECTORS!r} (it has "
                                     f"{f.files}); save the stacked vectors as "
                                     f"np.savez(path, {VECTORS}=f32[K, D])")
            vectors, acc = f[VECTORS], (f[TEST_ACC] if TEST_ACC in f.files else None)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ZooSourceError(f"zoo.source: cannot read {npz} as an .npz ({e}); save it with "
                             f"np.savez(path, {VECTORS}=f32[K, D])") from e
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating) or not len(vectors):
        raise ZooSourceError(f"zoo.source: {npz}[{VECTORS!r}] holds {vectors.dtype} "
                             f"{vectors.shape}; expected float rows f32[K, D], K >= 1")
    if acc is not None and acc.shape != (len(vectors),):
        raise ZooSourceError(f"zoo.source: {npz}[{TEST_ACC!r}] has shape {acc.shape}, not "
                             f"({len(vectors)},): one test accuracy (percent) per row")
    return vectors, acc


def _read_spec(npz: Path) -> ParamSpec:
    file = spec_file(npz)
    if not file.is_file():
        raise ZooSourceError(f"zoo.source: {npz} has no ParamSpec JSON beside it ({file}); "
                             "write spec.to_json() there (json.dump)")
    try:
        return ParamSpec.from_json(json.loads(file.read_text()))
    except (OSError, json.JSONDecodeError, SubsetError) as e:
        raise ZooSourceError(f"zoo.source: {file} is not a ParamSpec JSON "
                             f"({str(e).splitlines()[0]}); write spec.to_json() there") from e


def check(npz: Path, *, spec: ParamSpec, settings, seed: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """``(rows i64[K], columns i64[D])``: the rows the zoo will hold and the column of a
    row feeding each coordinate of ``spec``."""
    if settings.source_filter:
        raise ZooSourceError("zoo.source_filter applies to Small CNN Zoo rows; an .npz is "
                             "taken whole: use --config.zoo.source_filter=''")
    vectors, _ = _read(npz)
    saved = _read_spec(npz)
    if saved.size != vectors.shape[1]:
        raise ZooSourceError(f"zoo.source: rows of {npz} hold {vectors.shape[1]} numbers but "
                             f"{spec_file(npz).name} describes {saved.size}; write the spec "
                             "of these vectors")
    columns = column_order(saved, spec, spec_file(npz).name)
    rows = choose_members(len(vectors), settings.num_models, seed)
    check_finite(vectors[rows], [f"row {r}" for r in rows], NAN_FIX)
    return rows, columns


def load(npz: Path, rows: np.ndarray, columns: np.ndarray, *, spec: ParamSpec) -> ImportedZoo:
    """The chosen rows as vectors in ``spec`` order, with their stored test accuracies."""
    vectors, acc = _read(npz)
    meta = dict(format="npz", path=str(npz.absolute()), rows=[int(r) for r in rows])
    stored = None if acc is None else np.asarray(acc[rows], np.float32)
    return ImportedZoo(np.asarray(vectors[rows][:, columns], np.float32), spec,
                       tuple(f"row {r}" for r in rows), stored, meta)
