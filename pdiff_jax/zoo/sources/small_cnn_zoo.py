"""The Small CNN Zoo (Unterthiner et al., 2020) as an imported zoo.

One folder per data set, as unpacked from the zoo's ``<data set>.tar.xz``:

    weights.npy      f32[N, 4970]: row i holds every parameter of network checkpoint i
    layout.csv       which columns of a row are which variable, one line per variable:
                     varname ('sequential/conv2d/kernel:0'), start_idx, end_idx
                     (exclusive) and shape ('(3, 3, 1, 16)', Keras layout); other
                     columns (e.g. a pandas index) are ignored
    metrics.csv.gz   row i describes weights row i: the hyperparameters (config.dataset,
                     config.activation, config.learning_rate, ...), step, and
                     train/test accuracy and loss (accuracies as fractions)

The network is ``models/small_cnn_zoo.py`` (``model.kwargs.activation`` must be the
rows' activation: one model per activation). The zoo's README and ``train_network.py``
(google-research/dnn_predict_accuracy) give the network, the metrics columns and the
input scaling: images / 255 mapped to [-1, 1] and, for colour sets, the mean of R, G, B
as one gray channel. Assumed, as the published loaders of these files read them (the
README does not spell out layout.csv): a variable's numbers are its Keras array
flattened in C order; variables are grouped into layers by their varname without its
last part, layers ordered by their first column (4-D kernels: the convolutions, then
the 2-D kernel: the dense layer); test_accuracy values above 1 are read as percent.

The [-1, 1] scaling is folded into ``conv1``, so the imported networks read this
library's normalized images x = (x01 - mean) / std: the zoo's input is u = 2 x01 - 1
= 2 std x + (2 mean - 1), and ``conv1`` is linear and pads nothing ('valid'), so
conv1(W, u) + b = conv1(2 std W, x) + b + sum(W (2 mean - 1)) exactly.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import gzip
import math
import os
from pathlib import Path

import numpy as np

from pdiff_jax.data.catalog import DATASETS
from pdiff_jax.models.small_cnn_zoo import conv_names
from pdiff_jax.params.subset import ParamSpec
from pdiff_jax.zoo.sources import row_filter
from pdiff_jax.zoo.sources.imported import (
    ImportedZoo,
    ZooSourceError,
    check_finite,
    choose_members,
    column_order,
    listed,
)

WEIGHTS, LAYOUT, METRICS = "weights.npy", "layout.csv", "metrics.csv.gz"
FILES = (WEIGHTS, LAYOUT, METRICS)
LAYOUT_COLUMNS = ("varname", "start_idx", "end_idx", "shape")
DATASET, ACTIVATION, TEST_ACCURACY = "config.dataset", "config.activation", "test_accuracy"
# The zoo's data set names -> this library's data.name values with the same images.
DATA_NAMES = {"mnist": ("mnist", "bundled_mnist"), "fashion_mnist": ("fashion_mnist",),
              "cifar10": ("cifar10",)}
NAN_FIX = ("add 'finite' to zoo.source_filter to leave such rows out, e.g. "
           "--config.zoo.source_filter='activation=relu,step=86,finite'")
_CHUNK = 4096   # rows read at a time when testing 'finite'


def holds_small_cnn_zoo(path: Path) -> bool:
    """Whether ``path`` is a folder with any of the zoo's three files."""
    return path.is_dir() and any((path / f).exists() for f in FILES)


@dataclasses.dataclass(frozen=True)
class Variable:
    """One line of layout.csv: columns [start, end) of a row hold ``varname``."""

    varname: str
    start: int
    end: int
    shape: tuple[int, ...]

    @property
    def layer(self) -> str:
        return self.varname.rsplit("/", 1)[0] if "/" in self.varname else ""

    @property
    def leaf(self) -> str:
        return self.varname.rsplit("/", 1)[-1].split(":")[0]


def _parse_shape(text: str) -> tuple[int, ...]:
    value = ast.literal_eval(text.strip())
    value = (value,) if isinstance(value, int) else tuple(value)
    if not all(isinstance(d, int) and d > 0 for d in value):
        raise ValueError(text)
    return value


def read_layout(folder: Path) -> list[Variable]:
    """The variables of layout.csv, ordered by their first column; they must cover the
    columns 0..D-1 once each."""
    file = folder / LAYOUT
    try:
        with open(file, newline="") as f:
            lines = list(csv.DictReader(f))
            header = lines[0].keys() if lines else []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ZooSourceError(f"zoo.source: cannot read {file} ({e}); pass the zoo's own "
                             "layout.csv") from e
    missing = [c for c in LAYOUT_COLUMNS if c not in header]
    if missing:
        raise ZooSourceError(f"zoo.source: {file} lacks the column(s) {missing} (it needs "
                             f"{', '.join(LAYOUT_COLUMNS)}); pass the zoo's own layout.csv")
    variables = []
    for i, line in enumerate(lines, start=2):
        try:
            v = Variable(line["varname"], int(line["start_idx"]), int(line["end_idx"]),
                         _parse_shape(line["shape"]))
        except (ValueError, SyntaxError, TypeError) as e:
            raise ZooSourceError(f"zoo.source: {file} line {i} is not 'varname, start_idx, "
                                 f"end_idx, shape' ({dict(line)}); pass the zoo's own "
                                 "layout.csv") from e
        if v.end - v.start != math.prod(v.shape):
            raise ZooSourceError(f"zoo.source: {file} line {i}: {v.varname} spans columns "
                                 f"{v.start}..{v.end} ({v.end - v.start} numbers) but has "
                                 f"shape {v.shape} ({math.prod(v.shape)}); fix layout.csv")
        variables.append(v)
    variables.sort(key=lambda v: v.start)
    edge = 0
    for v in variables:
        if v.start != edge:
            what = "described twice" if v.start < edge else "described by no variable"
            raise ZooSourceError(f"zoo.source: {file}: columns {min(edge, v.start)}.."
                                 f"{max(edge, v.start)} are {what} (at {v.varname}); fix "
                                 "layout.csv")
        edge = v.end
    if not variables:
        raise ZooSourceError(f"zoo.source: {file} describes no variable; pass the zoo's own "
                             "layout.csv")
    return variables


def layout_spec(variables: list[Variable], model_def, file: Path) -> ParamSpec:
    """The layout as a ``ParamSpec`` in the zoo's column order, its variables given the
    model's names: the k-th layer with a 4-D kernel is ``conv{k}``, the 2-D one ``dense``."""
    layers: dict[str, dict[str, Variable]] = {}
    for v in variables:
        if v.leaf not in ("kernel", "bias") or v.leaf in layers.get(v.layer, {}):
            raise ZooSourceError(f"zoo.source: {file}: {v.varname} is not the one kernel or "
                                 f"bias of layer {v.layer!r}; this is not a Small CNN Zoo "
                                 "layout (3 convolutions and a dense layer)")
        layers.setdefault(v.layer, {})[v.leaf] = v
    kinds = {layer: len(leaves.get("kernel", Variable("", 0, 0, ())).shape)
             for layer, leaves in layers.items()}
    convs = conv_names(model_def.module.depth)
    expected = [4] * len(convs) + [2]
    if list(kinds.values()) != expected or any(len(v) != 2 for v in layers.values()):
        raise ZooSourceError(
            f"zoo.source: {file} describes the layers {listed(kinds, 12)} with kernels of rank "
            f"{list(kinds.values())}, but small_cnn_zoo (model.kwargs.depth="
            f"{model_def.module.depth}) has {len(convs)} convolutions (rank-4 kernel and a "
            "bias each) then a dense layer: set model.kwargs.depth, or pass a Small CNN Zoo")
    module_of = dict(zip(layers, (*convs, "dense"), strict=True))
    first, last = layers[next(iter(layers))]["kernel"], layers[list(layers)[-1]]["kernel"]
    channels = model_def.input_shape[-1]
    if first.shape[2] != channels:
        raise ZooSourceError(
            f"zoo.source: the zoo's networks read {first.shape[2]}-channel images "
            f"({first.varname} {first.shape}), the data gives {channels}: set "
            f"--config.data.channels={first.shape[2]} (the zoo made colour images gray as "
            "the mean of R, G, B; for its exact inputs pass an .npz of such images)")
    if last.shape[-1] != model_def.num_classes:
        raise ZooSourceError(
            f"zoo.source: the zoo's networks have {last.shape[-1]} classes ({last.varname} "
            f"{last.shape}), data.name has {model_def.num_classes}: use the zoo's data set")
    return ParamSpec(tuple(f"params/{module_of[v.layer]}/{v.leaf}" for v in variables),
                     tuple(v.shape for v in variables), ("float32",) * len(variables))


@functools.lru_cache(maxsize=4)
def _read_metrics(file: str, stamp: tuple, columns: tuple[str, ...]):
    """(header, number of rows, {column: str[N]}) of metrics.csv.gz, for ``columns``
    present in it; cached per file version (the config check and the import both read)."""
    del stamp   # part of the cache key only
    try:
        with gzip.open(file, "rt", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ZooSourceError(f"zoo.source: {file} is empty; pass the zoo's own "
                                     "metrics.csv.gz")
            index = {c: header.index(c) for c in columns if c in header}
            values: dict[str, list[str]] = {c: [] for c in index}
            n = 0
            for row in reader:
                n += 1
                for c, i in index.items():
                    values[c].append(row[i] if i < len(row) else "")
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise ZooSourceError(f"zoo.source: {file} is not a gzip-compressed CSV ({e}); pass "
                             "the zoo's own metrics.csv.gz") from e
    return tuple(header), n, {c: np.asarray(v, dtype=str) for c, v in values.items()}


def read_metrics(folder: Path, columns) -> tuple[tuple[str, ...], int, dict]:
    file = folder / METRICS
    st = os.stat(file)
    return _read_metrics(str(file), (st.st_mtime_ns, st.st_size), tuple(columns))


def open_weights(folder: Path) -> np.ndarray:
    """weights.npy mapped, not read: f[N, D] (rows are read when indexed)."""
    file = folder / WEIGHTS
    try:
        weights = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ZooSourceError(f"zoo.source: {file} is not a NumPy .npy array ({e}); pass the "
                             "zoo's own weights.npy") from e
    if weights.ndim != 2 or not np.issubdtype(weights.dtype, np.floating):
        raise ZooSourceError(f"zoo.source: {file} holds {weights.dtype} {weights.shape}; "
                             "expected float rows [N, D], one network each")
    return weights


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the config check found and the import reads."""

    rows: np.ndarray                     # i64[K]: rows of weights.npy, in file order
    columns: np.ndarray                  # i64[D]: the row column feeding each coordinate
    stored_test_acc: np.ndarray | None   # f32[K] percent, or None without test_accuracy


def _finite_rows(weights, rows: np.ndarray) -> np.ndarray:
    ok = np.ones(len(rows), bool)
    for i in range(0, len(rows), _CHUNK):
        ok[i:i + _CHUNK] = np.isfinite(weights[rows[i:i + _CHUNK]]).all(axis=1)
    return ok


def _one_value(values: np.ndarray, what: str, fix: str) -> str:
    found = sorted(set(values.tolist()))
    if len(found) > 1:
        raise ZooSourceError(f"zoo.source: the rows left by zoo.source_filter mix {what} "
                             f"{listed(found)}; {fix}")
    return found[0]


def _check_hyperparameters(table, rows, model_def, data_name: str) -> None:
    """The rows' data set is ``data.name``'s and their activation the model's."""
    if DATASET in table:
        name = _one_value(table[DATASET][rows], "data sets",
                          "add dataset=NAME to zoo.source_filter")
        if data_name in DATASETS and data_name not in DATA_NAMES.get(name, ()):
            known = DATA_NAMES.get(name)
            use = (f"--config.data.name={known[0]}" if known else
                   "--config.data.name=PATH.npz with the zoo's images")
            raise ZooSourceError(f"zoo.source: the rows were trained on {name!r}, but "
                                 f"data.name={data_name!r}; add dataset={data_name} to "
                                 f"zoo.source_filter, or use {use}")
    if ACTIVATION in table:
        activation = model_def.module.activation
        found = _one_value(table[ACTIVATION][rows], "activations", "small_cnn_zoo has one: "
                           f"add activation={activation} to zoo.source_filter")
        if found != activation:
            raise ZooSourceError(f"zoo.source: the rows use activation {found!r}, but "
                                 f"model.kwargs.activation={activation!r}: use "
                                 f"--config.model.kwargs.activation={found}, or add "
                                 f"activation={activation} to zoo.source_filter")


def _no_rows_left(clauses, table, n: int, text: str, finite: int | None) -> ZooSourceError:
    each = [f"{c}: {int(row_filter.passes(c, table[c.column], METRICS).sum())}"
            for c in clauses if c.column != row_filter.FINITE]
    if finite is not None:
        each.append(f"finite: {finite} of the rows passing the rest")
    return ZooSourceError(f"zoo.source: no row of the {n} left after zoo.source_filter="
                          f"{text!r} (rows passing each clause: {'; '.join(each) or 'none'});"
                          " loosen or fix the filter")


def check(folder: Path, *, model_def, spec: ParamSpec, settings, data_name: str,
          seed: int) -> Plan:
    """Everything about the folder that can be wrong, found before any work."""
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise ZooSourceError(f"zoo.source: {folder} has no {' or '.join(missing)} (a Small CNN "
                             f"Zoo folder holds {', '.join(FILES)}, as unpacked from the zoo's "
                             "<data set>.tar.xz); fix zoo.source")
    variables = read_layout(folder)
    columns = column_order(layout_spec(variables, model_def, folder / LAYOUT), spec, LAYOUT)
    weights = open_weights(folder)
    if weights.shape[1] != variables[-1].end:
        raise ZooSourceError(f"zoo.source: rows of {folder / WEIGHTS} hold {weights.shape[1]} "
                             f"numbers but {LAYOUT} describes {variables[-1].end}: the files "
                             "come from different zoos; use the three files of one zoo")
    clauses = row_filter.parse_filter(settings.source_filter)
    wanted = (*row_filter.columns_of(clauses), DATASET, ACTIVATION, TEST_ACCURACY)
    header, n, table = read_metrics(folder, wanted)
    if n != weights.shape[0]:
        raise ZooSourceError(f"zoo.source: {METRICS} has {n} rows but {WEIGHTS} has "
                             f"{weights.shape[0]}; row i of one describes row i of the other: "
                             "use the files of one zoo")
    row_filter.check_columns(clauses, header, METRICS)
    rows = np.flatnonzero(row_filter.select_rows(clauses, table, n, METRICS))
    finite = None
    if any(c.column == row_filter.FINITE for c in clauses) and rows.size:
        rows = rows[_finite_rows(weights, rows)]
        finite = rows.size
    if rows.size == 0:
        raise _no_rows_left(clauses, table, n, settings.source_filter, finite)
    _check_hyperparameters(table, rows, model_def, data_name)
    rows = rows[choose_members(rows.size, settings.num_models, seed)]
    check_finite(np.asarray(weights[rows]), [f"row {r}" for r in rows], NAN_FIX)
    stored = None
    if TEST_ACCURACY in table:
        stored = row_filter.as_numbers(table[TEST_ACCURACY][rows])
        if stored is None:
            raise ZooSourceError(f"zoo.source: column {TEST_ACCURACY} of {METRICS} holds text; "
                                 "pass the zoo's own metrics.csv.gz")
        scale = 1.0 if np.nanmax(stored, initial=0.0) > 1.0 else 100.0   # fractions -> %
        stored = (stored * scale).astype(np.float32)
    return Plan(rows, columns, stored)


def fold_input_scaling(vectors: np.ndarray, spec: ParamSpec, mean, std) -> np.ndarray:
    """f32[K, D] of networks reading [-1, 1] images -> the same networks reading images
    normalized as (x01 - mean) / std (per channel; see the module docstring)."""
    out = np.asarray(vectors, np.float64).copy()
    k, b = (spec.names.index(f"params/conv1/{leaf}") for leaf in ("kernel", "bias"))
    ko, kshape, bo = spec.offsets[k], spec.shapes[k], spec.offsets[b]
    kernel = out[:, ko:ko + math.prod(kshape)].reshape(len(out), *kshape)   # [K, 3, 3, C, O]
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    out[:, bo:bo + kshape[-1]] += np.einsum("khwco,c->ko", kernel, 2.0 * mean - 1.0)
    out[:, ko:ko + math.prod(kshape)] = (kernel * (2.0 * std)[:, None]).reshape(len(out), -1)
    return out.astype(np.float32)


def load(folder: Path, plan: Plan, *, spec: ParamSpec, dataset, settings) -> ImportedZoo:
    """The planned rows as vectors in ``spec`` order, reading ``dataset``'s images."""
    rows = np.asarray(open_weights(folder)[plan.rows], np.float32)[:, plan.columns]
    vectors = fold_input_scaling(rows, spec, dataset.mean, dataset.std)
    meta = dict(format="small_cnn_zoo", path=str(folder.absolute()),
                filter=settings.source_filter, rows=[int(r) for r in plan.rows],
                input="[-1, 1] scaling folded into conv1")
    return ImportedZoo(vectors, spec, tuple(f"row {r}" for r in plan.rows),
                       plan.stored_test_acc, meta)
