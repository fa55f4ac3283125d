"""``zoo.source_filter``: which rows of a zoo's metrics table to keep.

    dataset=mnist,activation=relu,step=86,test_accuracy>=0.5,finite

Comma-separated clauses, all of which a row must pass: ``COLUMN OP VALUE`` with OP one
of ``= != < <= > >=`` (numbers compare as numbers when the column holds numbers, else
``=``/``!=`` compare text), and the bare word ``finite`` (the row's parameters hold no
NaN or inf; the importer applies it, as it needs the weights). ``dataset`` and
``activation`` are short for the Small CNN Zoo's ``config.dataset`` and
``config.activation``. Parsing needs no file (the config check runs it first); columns
are checked against the table when it is read. Plain Python and NumPy.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from pdiff_jax.config.choices import SOURCE_FILTER_OPERATORS
from pdiff_jax.errors import ConfigError
from pdiff_jax.zoo.sources.imported import ZooSourceError

FINITE = "finite"
ALIASES = {"dataset": "config.dataset", "activation": "config.activation"}
EXAMPLE = "--config.zoo.source_filter='dataset=mnist,activation=relu,step=86,finite'"
_CLAUSE = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(" + "|".join(
    re.escape(op) for op in SOURCE_FILTER_OPERATORS) + r")\s*(\S.*?)\s*")


@dataclasses.dataclass(frozen=True)
class Clause:
    """One test on a row: ``column op value``, or ``finite`` (column 'finite', op '')."""

    column: str
    op: str
    value: str

    def __str__(self) -> str:
        return self.column if self.column == FINITE else f"{self.column}{self.op}{self.value}"


def parse_filter(text: str) -> tuple[Clause, ...]:
    """The clauses of a ``zoo.source_filter`` string ('' = keep every row)."""
    clauses = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if part == FINITE:
            clauses.append(Clause(FINITE, "", ""))
            continue
        m = _CLAUSE.fullmatch(part)
        if m is None or m.group(3)[0] in "=<>!":   # syntax: a usage error, like any value
            raise ConfigError(
                f"zoo.source_filter: cannot read {part!r}: each clause is COLUMN OP VALUE "
                f"with OP one of {' '.join(SOURCE_FILTER_OPERATORS)}, or 'finite'; e.g. "
                f"{EXAMPLE}")
        column = ALIASES.get(m.group(1), m.group(1))
        clauses.append(Clause(column, m.group(2), m.group(3)))
    return tuple(clauses)


def columns_of(clauses) -> list[str]:
    """The table columns the clauses read (``finite`` reads none), in order, once each."""
    return list(dict.fromkeys(c.column for c in clauses if c.column != FINITE))


def as_numbers(values: np.ndarray) -> np.ndarray | None:
    """f64[N] when every value of a text column reads as a number ('' as NaN), else None."""
    try:
        return np.asarray([float(v) if v != "" else np.nan for v in values], np.float64)
    except ValueError:
        return None


def passes(clause: Clause, values: np.ndarray, where: str) -> np.ndarray:
    """bool[N]: which rows' ``values`` (the clause's column, as text) pass ``clause``."""
    numbers = as_numbers(values)
    try:
        target = float(clause.value)
    except ValueError:
        target = None
    if numbers is not None and target is not None:
        compare = {"=": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
                   ">": np.greater, ">=": np.greater_equal}[clause.op]
        return compare(numbers, target)
    if clause.op not in ("=", "!="):
        raise ZooSourceError(
            f"zoo.source_filter: {clause} compares text: column {clause.column!r} of {where} "
            f"holds {'text' if numbers is None else 'numbers'}, so use = or != "
            f"(e.g. {clause.column}={values[0] if len(values) else 'VALUE'})")
    equal = np.asarray(values) == clause.value
    return equal if clause.op == "=" else ~equal


def check_columns(clauses, header, where: str) -> None:
    """Raise unless every column the clauses read is in ``header`` (listing the known)."""
    for column in columns_of(clauses):
        if column not in header:
            raise ZooSourceError(
                f"zoo.source_filter: {where} has no column {column!r}; its columns: "
                f"{', '.join(header)} (and the short names {', '.join(ALIASES)}); e.g. "
                f"{EXAMPLE}")


def select_rows(clauses, table: dict[str, np.ndarray], n_rows: int, where: str) -> np.ndarray:
    """bool[n_rows]: rows passing every clause but ``finite`` (which needs the weights).

    ``table`` maps each column the clauses read (:func:`check_columns`) to its values
    as text.
    """
    keep = np.ones(n_rows, bool)
    for clause in clauses:
        if clause.column != FINITE:
            keep &= passes(clause, table[clause.column], where)
    return keep
