"""Tabular CSV: named columns, categories, missing cells, and the encoder fitted on them.

Reading (`read_table`) turns a CSV file into its column names and its rows of
text cells; `load.load_csv` picks the label and feature columns from them.
A feature column as loaded is float64: numbers as they are, a categorical
column's cells as indices into its `Column.values` (the distinct strings of
both files, sorted), and a missing cell as NaN.

`TabularEncoder` is what preprocessing fits on the training split and what
travels with the model (`preprocessing.columns` in the model file, see
docs/model-format.md): which columns, each categorical column's categories
(one-hot, in sorted order), the value that fills a missing cell, and what
an unseen category becomes. `infer.py` repeats `encode` on raw rows.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from mlpspec.errors import DataError

#: Cell texts that mean "no value" (compared stripped and lower-cased), as in
#: pandas' defaults and the UCI files (`?`). infer.py has the same list.
MISSING_TEXTS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})

MISSING_POLICIES = ("error", "mean", "median", "most_frequent")
UNSEEN_POLICIES = ("error", "ignore")


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING_TEXTS


@attrs.frozen
class Column:
    """A feature column as loaded.

    `kind` is "numeric" or "categorical"; `values` (categorical only) are the
    distinct cell texts of both files, sorted: the loaded column holds
    indices into them (float64, NaN for a missing cell).
    """

    name: str
    kind: str
    values: tuple[str, ...] = ()

    def to_meta(self) -> dict:
        return {"name": self.name, "kind": self.kind, "values": list(self.values)}

    @classmethod
    def from_meta(cls, meta: Mapping) -> Column:
        return cls(meta["name"], meta["kind"], tuple(meta["values"]))


@attrs.frozen(eq=False)
class Table:
    """A CSV file as text: `names` (header names, or `column 1`, ... without a header),
    `rows` (lists of cells, all of the same length) and `lines` (each row's line number).

    A file of finite numbers only may come as `numbers` instead, float64
    `(n, len(names))`, with `rows` None: parsing 47 million cells of an
    MNIST-sized file as Python strings would take minutes.
    """

    names: tuple[str, ...]
    rows: list[list[str]] | None
    lines: list[int]
    numbers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def cells(self, j: int) -> list[str]:
        """Column `j` as text (numbers in their shortest form: 2.0 -> "2")."""
        if self.rows is not None:
            return [row[j] for row in self.rows]
        return [str(int(v)) if v.is_integer() else repr(v) for v in self.numbers[:, j].tolist()]


def read_table(path: str, data: bytes, *, header: bool, numeric: bool = False) -> Table:
    """Parse CSV bytes; refuse non-UTF-8 text, ragged rows and a header that does not fit.

    `numeric`: try NumPy's parser first, for a file expected to hold only
    numbers (no categorical column); anything else takes the careful path.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    if numeric:
        table = _numeric_table(text, header=header)
        if table is not None:
            return table
    reader = csv.reader(io.StringIO(text))
    rows: list[list[str]] = []
    lines: list[int] = []
    names: list[str] | None = None
    width = None
    header_line = None
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header and names is None:
                names = [cell.strip() for cell in row]
                header_line = reader.line_num
                width = len(names)
                continue
            if width is None:
                width = len(row)
            elif len(row) != width:
                origin = (f" as in the header on line {header_line} (data.header = true)"
                          if header_line else "")
                raise DataError(f"{path}: line {reader.line_num}: expected {width} columns{origin}, "
                                f"found {len(row)}")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: contains no samples")
    if names is None:
        names = [f"column {j + 1}" for j in range(width)]
    return Table(tuple(names), rows, lines)


def _numeric_table(text: str, *, header: bool) -> Table | None:
    """The whole file as finite float64 numbers, or None when it is anything else."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            numbers = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=int(header),
                                 dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    if numbers.shape[0] == 0 or not np.isfinite(numbers).all():
        return None  # the careful path names the line of a missing or odd value
    numbered = [i for i, line in enumerate(lines, start=1) if line.strip()]
    if header:
        names = [cell.strip() for cell in next(csv.reader(lines[:1]))]
        if len(names) != numbers.shape[1]:
            return None
        numbered = numbered[1:]
    else:
        names = [f"column {j + 1}" for j in range(numbers.shape[1])]
    if len(numbered) != len(numbers):
        return None
    return Table(tuple(names), None, numbered, numbers)


def numeric_column(path: str, table: Table, j: int, *, header: bool,
                   what: str = "a number") -> np.ndarray:
    """Column `j` as float64 `(n,)`, NaN for a missing cell; refuse text with the key that fixes it."""
    if table.numbers is not None:
        return table.numbers[:, j].copy()
    cells = [row[j] for row in table.rows]
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(cells))
    for i, cell in enumerate(cells):
        try:
            out[i] = float(cell)
        except ValueError:
            if is_missing(cell):
                out[i] = np.nan
                continue
            hint = ("; if line 1 names the columns, set data.header = true"
                    if not header and i == 0 and table.lines[0] == 1 else
                    "; a column of text is a feature only if listed in data.categorical "
                    "(or leave it out with data.exclude)")
            name = f" ({table.names[j]!r})" if header else ""
            raise DataError(f"{path}: line {table.lines[i]}, column {j + 1}{name}: "
                            f"expected {what}, found {cell!r}{hint}") from None
    return out


# ---------------------------------------------------------------- the fitted encoder


@attrs.frozen
class FeatureColumn:
    """One fitted feature column: numeric (one input) or categorical (one input per category).

    `fill` replaces a missing cell: a float for a numeric column, a category
    for a categorical one; None when the policy is `error`.
    """

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    fill: float | str | None = None

    @property
    def width(self) -> int:
        return len(self.categories) if self.kind == "categorical" else 1


@attrs.frozen(eq=False)
class TabularEncoder:
    """Column selection, imputation and one-hot encoding, fitted on a training split.

    `source` names every column of the training file in order (the label and
    excluded ones too), `label` the label column(s), `features` the selected
    columns in the order their inputs appear. `encode` turns loaded columns
    `(n, len(features))` into the network's raw inputs `(n, width)` (before scaling).
    """

    source: tuple[str, ...]
    label: tuple[str, ...]
    features: tuple[FeatureColumn, ...]
    missing: str = "error"
    unseen: str = "error"

    @property
    def width(self) -> int:
        return sum(column.width for column in self.features)

    def input_names(self) -> list[str]:
        """One name per encoded input: the column, or `column=category`."""
        names = []
        for column in self.features:
            if column.kind == "categorical":
                names.extend(f"{column.name}={category}" for category in column.categories)
            else:
                names.append(column.name)
        return names

    @classmethod
    def fit(cls, x_train: np.ndarray, columns: Sequence[Column], *, source: Sequence[str],
            label: Sequence[str], missing: str, unseen: str) -> TabularEncoder:
        """Fit on the loaded training columns `x_train` `(n, len(columns))`."""
        fitted = []
        for j, column in enumerate(columns):
            values = x_train[:, j]
            present = values[~np.isnan(values)]
            if len(present) == 0:
                raise DataError(f"data.train: column {column.name!r} has no value in the training "
                                f"split; leave it out with data.exclude")
            if column.kind == "categorical":
                codes, counts = np.unique(present.astype(np.int64), return_counts=True)
                categories = tuple(column.values[c] for c in codes)
                # Ties go to the first category in sorted order, so the fill is reproducible.
                fill = column.values[codes[int(np.argmax(counts))]] if missing != "error" else None
                fitted.append(FeatureColumn(column.name, "categorical", categories, fill))
            else:
                fill = None
                if missing == "mean":
                    fill = float(present.mean())
                elif missing == "median":
                    fill = float(np.median(present))
                elif missing == "most_frequent":
                    uniques, counts = np.unique(present, return_counts=True)
                    fill = float(uniques[int(np.argmax(counts))])
                fitted.append(FeatureColumn(column.name, "numeric", (), fill))
        return cls(tuple(source), tuple(label), tuple(fitted), missing, unseen)

    def encode(self, x: np.ndarray, columns: Sequence[Column], what: str) -> np.ndarray:
        """Loaded columns `(n, len(features))` -> float64 inputs `(n, width)`.

        `columns` are the loaded columns (their `values` decode categorical
        indices); `what` names the split for errors (`data.test`).
        """
        out = np.zeros((len(x), self.width))
        at = 0
        for j, (fitted, column) in enumerate(zip(self.features, columns)):
            values = x[:, j]
            holes = np.isnan(values)
            if holes.any() and fitted.fill is None:
                raise DataError(f"{what}: column {fitted.name!r}: {int(holes.sum())} missing values; "
                                f"set data.missing = \"mean\", \"median\" or \"most_frequent\"")
            if fitted.kind == "numeric":
                out[:, at] = np.where(holes, fitted.fill if fitted.fill is not None else 0.0, values)
                at += 1
                continue
            # Loaded index -> position among the fitted categories (-1: not seen in training).
            position = {category: k for k, category in enumerate(fitted.categories)}
            lookup = np.array([position.get(value, -1) for value in column.values], dtype=np.int64)
            codes = np.where(holes, 0, values).astype(np.int64)
            index = lookup[codes] if len(lookup) else np.zeros(len(x), dtype=np.int64)
            if fitted.fill is not None:
                index[holes] = position[fitted.fill]
            unseen = index < 0
            if unseen.any() and self.unseen == "error":
                first = column.values[codes[int(np.argmax(unseen))]]
                raise DataError(f"{what}: column {fitted.name!r}: category {first!r} is not in the "
                                f"training split ({_listed(fitted.categories)}); set "
                                f"data.unseen = \"ignore\" to encode unseen categories as all zeros")
            rows = np.flatnonzero(~unseen)
            out[rows, at + index[rows]] = 1.0
            at += fitted.width
        return out

    def to_document(self) -> dict[str, Any]:
        """The model file's `preprocessing.columns` (docs/model-format.md, format 1.2)."""
        features = []
        for column in self.features:
            entry: dict[str, Any] = {"name": column.name, "kind": column.kind}
            if column.kind == "categorical":
                entry["categories"] = list(column.categories)
            if column.fill is not None:
                entry["fill"] = column.fill
            features.append(entry)
        return {"source": list(self.source), "label": list(self.label), "missing": self.missing,
                "unseen": self.unseen, "features": features}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> TabularEncoder:
        """The inverse of `to_document`."""
        features = tuple(FeatureColumn(entry["name"], entry["kind"],
                                       tuple(entry.get("categories", ())), entry.get("fill"))
                         for entry in document["features"])
        return cls(tuple(document["source"]), tuple(document["label"]), features,
                   document["missing"], document["unseen"])


def _listed(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
