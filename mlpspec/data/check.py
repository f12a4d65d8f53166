"""Check a spec against its local data files before anything is trained.

    problems = check_spec_against_data(spec, base_dir, source="specs/wine.toml")

`mlpspec validate` and `mlpspec run` (before any stage) both call this, so a
spec that `validate` accepts is not refused by `run` before training for
anything the data's headers and counts can tell. What the spec alone decides
(built-in datasets, whose counts are known) is `mlpspec.spec.checks`; this
module covers local files (`idx`, `npz`, `csv`), reading only what it needs:

* npz: the `.npy` header of `x` inside the zip (shape and dtype, no data)
  and the labels `y` (one number per sample);
* IDX: the header of the image files (4 + 4 * ndim bytes, inflated from the
  gzip stream as far as needed) and the label files (one byte per sample);
* CSV: one pass over the lines: the column count of the first row, the
  number of rows, and the label column's cells.

Checked: each file is readable and holds samples; train and test samples
have the same shape; `network.inputs` is the flattened feature count; the
labels lie in `[0, data.classes)` (classification); the validation split
leaves samples on both sides; flattening and augmentation suit the sample
shape. Each problem names the spec key that fixes it and the fix. Anything
this cannot decide cheaply (a malformed row deep in a CSV) is left to the
loader, whose errors name the file, line and key as well.
"""

from __future__ import annotations

import gzip
import math
import zipfile
from pathlib import Path

import attrs
import numpy as np

from mlpspec.errors import DataError, Problem
from mlpspec.spec import model
from mlpspec.spec.checks import validation_size_problem


@attrs.frozen
class FileFacts:
    """What the cheap read of one split found: `samples` count, per-sample `shape`
    (None when unknown) and, for classification, the integer labels' `low`/`high`
    (None when they could not be read cheaply or are not all whole numbers)."""

    samples: int
    shape: tuple[int, ...] | None
    low: int | None = None
    high: int | None = None


class _Unreadable(Exception):
    """A data file is unusable; `key` is the spec key naming it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def check_spec_against_data(spec: model.Spec, base_dir: Path, *,
                            source: str = "<spec>") -> list[Problem]:
    """The problems `run` would meet on `spec`'s local data files, each a `Problem`
    from `source` (the spec file) naming the key to change. Built-in datasets: []."""
    data_source = spec.data.source
    if isinstance(data_source, model.BuiltinSource):
        return []
    problems: list[Problem] = []

    def add(key: str, message: str) -> None:
        problems.append(Problem(source, key, message))

    try:
        train, test = _read_facts(data_source, Path(base_dir), classification=spec.task ==
                                  "classification")
    except _Unreadable as error:
        add(error.key, str(error))
        return problems
    for key, facts in (("train", train), ("test", test)):
        if facts.samples == 0:
            add(f"data.{key}", "expected at least one sample, found none; point it at a file "
                "with samples")
    _check_shapes(spec, train, test, add)
    if spec.task == "classification":
        _check_labels(data_source, train, test, add)
    _check_validation(spec, train, test, add)
    return problems


# ---------------------------------------------------------------- the checks


def _check_shapes(spec: model.Spec, train: FileFacts, test: FileFacts, add) -> None:
    if train.shape is None:
        return
    if test.shape is not None and test.shape != train.shape:
        add("data.test", f"expected samples of shape {_shape(train.shape)} as in data.train, "
            f"found {_shape(test.shape)}; both files must hold the same kind of sample")
        return
    shape = train.shape
    if not spec.data.preprocess.flatten and len(shape) > 1:
        add("data.preprocess.flatten", f"expected true: dense layers take flat inputs and the "
            f"samples of data.train are {_shape(shape)}, found false; set "
            "data.preprocess.flatten = true")
    features = math.prod(shape)
    if spec.network.inputs != features:
        add("network.inputs", f"expected {features} (the samples of data.train have "
            f"{_features(shape)}), found {spec.network.inputs}; set network.inputs = {features}")
    augment = spec.data.augment
    if len(shape) != 2 and (augment.translate or augment.rotate or augment.scale
                            or augment.elastic_alpha):
        add("data.augment", f"expected no augmentation: it distorts 2-D images and the samples "
            f"of data.train are {_shape(shape)}; remove the [data.augment] table")


def _check_labels(source, train: FileFacts, test: FileFacts, add) -> None:
    declared = source.classes
    if not declared:  # 0: the classes are the training file's distinct labels (CSV)
        return
    for key, facts in (("train", train), ("test", test)):
        if facts.low is None or facts.samples == 0:
            continue
        if facts.low < 0:
            add(f"data.{key}", f"expected labels in [0, data.classes), found {facts.low}; "
                "labels are class numbers counted from 0")
        if facts.high >= declared:
            add("data.classes", f"expected more than the largest label of data.{key} "
                f"({facts.high}), found {declared}; set data.classes = {facts.high + 1} and "
                f"the last dense layer's units to {facts.high + 1}")


def _check_validation(spec: model.Spec, train: FileFacts, test: FileFacts, add) -> None:
    validation, source = spec.data.validation, spec.data.source
    if validation.take_from == "none":
        return
    size = validation.size
    if isinstance(size, float) and not 0.0 < size < 1.0:
        return  # the spec's own checks report it
    pool = train if validation.take_from == "train" else test
    if pool.samples == 0:
        return
    where = f"data.{validation.take_from}"
    if validation.take_from in source.files():
        where += f" ({source.files()[validation.take_from]})"
    problem = validation_size_problem(size, pool.samples, where, validation.take_from)
    if problem is not None:
        add("data.validation.size", problem)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if shape else "scalars"


def _features(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"{shape[0]} features"
    return f"shape {_shape(shape)}, {math.prod(shape)} features once flattened"


# ---------------------------------------------------------------- cheap reads


def _read_facts(source, base_dir: Path, *, classification: bool) -> tuple[FileFacts, FileFacts]:
    paths = {key: base_dir / name for key, name in source.files().items()}
    for key, path in paths.items():
        try:
            found = path.is_file() or ("a folder" if path.is_dir() else None)
        except (OSError, ValueError) as error:  # a name too long, a NUL byte
            raise _Unreadable(f"data.{key}", f"{path}: cannot be a data file ({error})") from None
        if found is not True:
            what = "a folder, not a file" if found else "no such file"
            raise _Unreadable(f"data.{key}", f"{path}: {what}; the path is taken from the "
                              "spec's folder")
    match source:
        case model.NpzSource():
            return (_npz_facts(paths["train"], "data.train", classification),
                    _npz_facts(paths["test"], "data.test", classification))
        case model.IdxSource():
            return (_idx_facts(paths["train_images"], paths["train_labels"], "train", classification),
                    _idx_facts(paths["test_images"], paths["test_labels"], "test", classification))
        case model.CsvSource():
            return (_csv_facts(source, paths["train"], "data.train", classification),
                    _csv_facts(source, paths["test"], "data.test", classification))
    raise TypeError(f"unhandled data source {type(source).__name__}")  # a bug, not user input


def _label_range(y: np.ndarray) -> tuple[int | None, int | None]:
    """`(lowest, highest)` of whole-number labels; (None, None) if they are not whole."""
    if y.size == 0 or y.dtype.kind not in "iuf":
        return None, None
    if y.dtype.kind == "f" and not (np.all(np.isfinite(y)) and np.all(np.floor(y) == y)):
        return None, None
    return int(y.min()), int(y.max())


def _npz_facts(path: Path, key: str, classification: bool) -> FileFacts:
    """The shape of `x` from its `.npy` header, and the labels `y`."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy"): name for name in archive.namelist()}
            missing = [name for name in ("x", "y") if name not in names]
            if missing:
                raise _Unreadable(key, f"{path}: expected arrays x and y, missing "
                                  f"{' and '.join(missing)} (found {', '.join(names) or 'nothing'})")
            with archive.open(names["x"]) as member:
                x_shape = _npy_shape(member)
            with archive.open(names["y"]) as member:
                y_shape = _npy_shape(member)
                if classification and len(y_shape) == 1:
                    member.seek(0)
                    y = np.lib.format.read_array(member, allow_pickle=False)
                else:
                    y = np.zeros(0)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise _Unreadable(key, f"{path}: not a readable .npz archive with arrays x and y "
                          f"({error})") from None
    if not x_shape:
        raise _Unreadable(key, f"{path}: x: expected samples first (n, ...), found a scalar")
    if y_shape[:1] != x_shape[:1]:
        raise _Unreadable(key, f"{path}: expected one label in y per sample of x ({x_shape[0]}), "
                          f"found y of shape {y_shape}")
    return FileFacts(x_shape[0], tuple(x_shape[1:]), *_label_range(y))


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def _npy_shape(member) -> tuple[int, ...]:
    """The shape in a `.npy` header; reads the array only for a format without a public
    header reader (3.0, rare)."""
    version = np.lib.format.read_magic(member)
    reader = _HEADER_READERS.get(version)
    if reader is None:
        member.seek(0)
        return np.lib.format.read_array(member, allow_pickle=False).shape
    return tuple(reader(member)[0])


def _idx_facts(images: Path, labels: Path, split: str, classification: bool) -> FileFacts:
    from mlpspec.data.idx import read_idx_file

    dims = _idx_dims(images, f"data.{split}_images")
    try:
        y = read_idx_file(labels)
    except Exception as error:  # DataError naming the file
        raise _Unreadable(f"data.{split}_labels", str(error)) from None
    if y.ndim != 1 or len(y) != dims[0]:
        raise _Unreadable(f"data.{split}_labels", f"{labels}: expected {dims[0]} labels, one "
                          f"per image of data.{split}_images, found shape {y.shape}")
    low, high = _label_range(y) if classification else (None, None)
    return FileFacts(dims[0], tuple(dims[1:]), low, high)


def _idx_dims(path: Path, key: str) -> tuple[int, ...]:
    """The dims of an IDX file's header (plain or gzip; only the header is inflated)."""
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gz else raw
            head = stream.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or not 1 <= head[3] <= 8:
                raise _Unreadable(key, f"{path}: not an IDX file (header {head!r})")
            dims_bytes = stream.read(4 * head[3])
    except (OSError, EOFError) as error:
        raise _Unreadable(key, f"{path}: cannot read the IDX header ({error})") from None
    if len(dims_bytes) < 4 * head[3]:
        raise _Unreadable(key, f"{path}: the IDX header is cut short")
    return tuple(int.from_bytes(dims_bytes[i:i + 4], "big") for i in range(0, len(dims_bytes), 4))


def _csv_facts(source: model.CsvSource, path: Path, key: str, classification: bool) -> FileFacts:
    """Rows, columns and the label cells of a CSV file, read by the loader's own reader
    (`tabular.read_table`: the same header, blank lines and encoding).

    The feature count (columns less the label column) is only stated for
    the layout this module knows (every column but one integer `label_column`
    is a feature); other settings leave the shape to the loader."""
    from mlpspec.data.tabular import read_table

    label_column = source.label_column
    # Every column but one integer label column is a numeric feature: no column
    # selection, categorical encoding or several targets (those are the loader's).
    simple = (isinstance(label_column, int) and not source.targets and not source.features
              and not source.exclude and not source.categorical)
    try:
        table = read_table(str(path), path.read_bytes(), header=source.header, numeric=True)
    except OSError as error:
        raise _Unreadable(key, f"{path}: cannot read the CSV file ({error})") from None
    except DataError as error:
        raise _Unreadable(key, str(error)) from None
    rows, columns = len(table), len(table.names)
    if not simple or rows == 0:
        return FileFacts(rows, None)
    if not -columns <= label_column < columns:
        raise _Unreadable("data.label_column", f"expected a column of {path} (it has {columns} "
                          f"columns: 0 to {columns - 1}), found {label_column}; set "
                          "data.label_column to the label's column")
    labels = None
    if classification:
        try:
            labels = np.array([float(cell) for cell in table.cells(label_column)])
        except ValueError:
            labels = None  # not numeric labels: left to the loader
    low, high = _label_range(labels) if labels is not None else (None, None)
    return FileFacts(rows, (columns - 1,), low, high)
