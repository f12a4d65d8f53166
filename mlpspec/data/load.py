"""Load a dataset from its files into checked arrays: `RawDataset`.

Four sources, one result:

- `load_builtin`: a dataset from `mlpspec.data.sources`, fetched and verified;
- `load_idx`: four IDX files (gzip or raw);
- `load_npz`: a train and a test `.npz`, each with arrays `x` and `y`;
- `load_csv`: a train and a test CSV, one sample a line, a label column plus
  the feature columns.

Every loader runs the same checks and fails with a `DataError` naming the
file (and, inside an `.npz`, the array): at least one sample; numeric,
finite features with the same per-sample shape in train and test; one label
per sample, integral and in `[0, classes)`. Nothing here scales or reshapes
features; that is preprocessing's job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import types
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np

from mlpspec.data.download import fetch_file, mirror_order, read_verified, usable_dataset_dir
from mlpspec.data.idx import read_idx, read_idx_bytes
from mlpspec.data.sources import get_builtin
from mlpspec.errors import DataError
from mlpspec.files import load_arrays, read_json, save_arrays, write_json


@attrs.frozen(eq=False)
class RawDataset:
    """A checked train/test split, as read from disk.

    `x_train` is `(n_train, *sample_shape)` and `x_test` `(n_test, *sample_shape)`
    in the file's dtype (uint8 for MNIST, float64 from CSV); `y_train` `(n_train,)`
    and `y_test` `(n_test,)` are int64 in `[0, classes)` (regression, `classes`
    0: float64 targets `(n, k)`, no class names). `checksums` maps each
    file read to the sha256 of the payload actually parsed (decompressed for IDX),
    keyed by file name for built-in datasets and by role (`train`, `test`,
    `train_images`, ...) for local files, so that where a file lies doesn't matter.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    class_names: tuple[str, ...]
    checksums: Mapping[str, str] = attrs.field(converter=lambda m: types.MappingProxyType(dict(m)))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def class_counts(self) -> dict[str, np.ndarray]:
        """Samples per class: {"train": (classes,), "test": (classes,)} int64."""
        return {
            "train": np.bincount(self.y_train, minlength=self.classes),
            "test": np.bincount(self.y_test, minlength=self.classes),
        }

    def describe(self) -> dict:
        """A JSON-ready summary: counts, per-sample shape, dtype, class balance, checksums.

        `{"name", "classes", "class_names", "checksums": {file: sha256},
        "train" / "test": {"samples", "shape", "dtype", "class_counts": [int] * classes}}`;
        `shape` is the per-sample shape, e.g. `[28, 28]`.
        """
        # Regression data (classes 0) have no classes to count.
        counts = self.class_counts() if self.classes else {"train": np.zeros(0, int),
                                                           "test": np.zeros(0, int)}
        splits = {"train": self.x_train, "test": self.x_test}
        return {
            "name": self.name,
            "classes": self.classes,
            "class_names": list(self.class_names),
            **{
                split: {
                    "samples": len(x),
                    "shape": list(x.shape[1:]),
                    "dtype": x.dtype.name,
                    "class_counts": counts[split].tolist(),
                }
                for split, x in splits.items()
            },
            "checksums": dict(self.checksums),
        }

    def save(self, folder: Path) -> None:
        """Write the arrays (`<name>.npy`) and `meta.json` (the other fields) into `folder`."""
        save_arrays(folder, {name: getattr(self, name) for name in _ARRAYS})
        write_json(folder / "meta.json", {"name": self.name, "classes": self.classes,
                                          "class_names": list(self.class_names),
                                          "checksums": dict(self.checksums)})

    @classmethod
    def load(cls, folder: Path) -> RawDataset:
        """What `save` wrote to `folder`."""
        meta = read_json(folder / "meta.json")
        arrays = load_arrays(folder, _ARRAYS)
        return cls(meta["name"], arrays["x_train"], arrays["y_train"], arrays["x_test"],
                   arrays["y_test"], meta["classes"], tuple(meta["class_names"]), meta["checksums"])


_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load_builtin(
    name: str,
    extra_mirrors: Sequence[str] = (),
    *,
    timeout: float = 30,
    log: Callable[[str], None] | None = None,
) -> RawDataset:
    """Load a built-in dataset, fetching any file not already cached and verified.

    Each cached file is read once: its bytes are hashed and parsed from the
    same buffer.
    """
    dataset = get_builtin(name)
    dest_dir = usable_dataset_dir(name)
    arrays = {}
    checksums = {}
    for role, remote in dataset.files.items():
        path = dest_dir / remote.filename
        payload = read_verified(path, remote, log=log)
        if payload is None:
            mirrors = mirror_order(dataset, extra_mirrors)
            fetch_file(remote, mirrors, dest_dir, timeout=timeout, log=log)
            payload = read_verified(path, remote, log=log)
            if payload is None:  # replaced or removed by someone else meanwhile
                raise DataError(f"{path}: changed on disk right after it was verified")
        arrays[role] = read_idx(payload, name=str(path))
        checksums[remote.filename] = remote.sha256
    names = {role: str(dest_dir / remote.filename) for role, remote in dataset.files.items()}

    def split(images: str, labels: str) -> _Split:
        return _Split(arrays[images], arrays[labels], names[images], names[labels])

    return _checked(
        name,
        train=split("train_images", "train_labels"),
        test=split("test_images", "test_labels"),
        classes=dataset.classes,
        class_names=dataset.class_names,
        checksums=checksums,
    )


def load_idx(
    train_images: str | Path,
    train_labels: str | Path,
    test_images: str | Path,
    test_labels: str | Path,
    *,
    classes: int,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
) -> RawDataset:
    """Load four IDX files (each gzip or raw) into a checked `RawDataset`."""
    arrays = {}
    checksums = {}
    roles = {"train_images": train_images, "train_labels": train_labels,
             "test_images": test_images, "test_labels": test_labels}
    for role, path in roles.items():
        arrays[path], checksums[role] = read_idx_bytes(_read_bytes(path, "IDX file"),
                                                       name=str(path))
    return _checked(
        name or Path(train_images).name,
        train=_Split(arrays[train_images], arrays[train_labels], str(train_images), str(train_labels)),
        test=_Split(arrays[test_images], arrays[test_labels], str(test_images), str(test_labels)),
        classes=classes,
        class_names=class_names,
        checksums=checksums,
    )


def load_npz(
    train: str | Path,
    test: str | Path,
    *,
    classes: int,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
) -> RawDataset:
    """Load a train and a test `.npz`, each holding `x` (n, ...) and `y` (n,).

    `classes=0` reads regression data: `y` real-valued targets `(n,)` or
    `(n, k)`, returned as float64 `(n, k)`.
    """
    return _load_pair(train, test, ".npz file", _read_npz, classes=classes, name=name,
                      class_names=class_names)


def load_csv(
    train: str | Path,
    test: str | Path,
    *,
    classes: int,
    label_column: int = 0,
    header: bool = False,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
) -> RawDataset:
    """Load a train and a test CSV: comma-separated, one sample per line.

    Column `label_column` (negative counts from the end) holds the label,
    every other column a feature; `header=True` skips the first line, which
    must name as many columns as the rows have.
    Features come back as float64 of shape `(n_samples, n_columns - 1)`.
    """

    def read(path: str | Path, data: bytes) -> _Split:
        return _read_csv(path, data, label_column=label_column, header=header)

    return _load_pair(train, test, "CSV file", read, classes=classes, name=name,
                      class_names=class_names)


def _load_pair(train: str | Path, test: str | Path, what: str,
               read: Callable[[str | Path, bytes], "_Split"], *, classes: int,
               name: str | None, class_names: Sequence[str] | None) -> RawDataset:
    """Read a train and a test file with `read(path, bytes)`, hash them, check the result."""
    splits = {}
    checksums = {}
    for role, path in (("train", train), ("test", test)):
        data = _read_bytes(path, what)
        checksums[role] = hashlib.sha256(data).hexdigest()
        splits[path] = read(path, data)
    return _checked(
        name or Path(train).stem,
        train=splits[train],
        test=splits[test],
        classes=classes,
        class_names=class_names,
        checksums=checksums,
    )


@attrs.frozen(eq=False)
class _Split:
    """Features and labels of one split, with the names errors should use."""

    x: np.ndarray
    y: np.ndarray
    x_source: str
    y_source: str


def _read_bytes(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc


def _read_npz(path: str | Path, data: bytes) -> _Split:
    # numpy takes anything that is neither zip nor .npy for a pickle and says
    # so; name what the file really is instead.
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
        raise DataError(f"{path}: not an .npz archive (expected a zip file, found bytes "
                        f"{data[:8]!r})")
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive with arrays x and y, found a single .npy array")
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "nothing"
            raise DataError(
                f"{path}: expected arrays x and y, missing {' and '.join(missing)} (found {found})"
            )
        arrays = {}
        for key in ("x", "y"):
            try:
                arrays[key] = archive[key]
            except ValueError as exc:  # object arrays need pickle, which we refuse
                raise DataError(f"{path}: {key}: cannot be loaded without pickle ({exc})") from exc
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"{path}: {key}: corrupt array ({exc})") from exc
    return _Split(arrays["x"], arrays["y"], f"{path}: x", f"{path}: y")


def _read_csv(path: str | Path, data: bytes, *, label_column: int, header: bool) -> _Split:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file warns; checked below
            table = np.loadtxt(
                io.StringIO(text),
                delimiter=",",
                skiprows=int(header),
                dtype=np.float64,
                ndmin=2,
                comments=None,
            )
    except ValueError as exc:
        raise _csv_problem(path, text, header) or DataError(f"{path}: {exc}") from exc
    if table.shape[0] == 0:
        raise DataError(f"{path}: contains no samples")
    n_columns = table.shape[1]
    if n_columns < 2:
        raise DataError(
            f"{path}: expected a label column and at least one feature column, found {n_columns} column"
        )
    if header:
        _check_header(path, text, n_columns)
    if not -n_columns <= label_column < n_columns:
        raise DataError(f"{path}: label_column {label_column} is out of range for {n_columns} columns")
    y = table[:, label_column]
    x = np.delete(table, label_column, axis=1)
    return _Split(x, y, f"{path}: features", f"{path}: column {label_column % n_columns + 1} (labels)")


def _check_header(path: str | Path, text: str, n_columns: int) -> None:
    """With `header = true`, the first line must name as many columns as each row has.

    A header with fewer or more names than the rows have columns means the
    file is not what the spec says (no header, or a different layout).
    """
    lines = text.splitlines()
    names = next(csv.reader(lines[:1]), [])
    if len(names) != n_columns:
        first_row = next((i for i, line in enumerate(lines[1:], start=2) if line.strip()), 2)
        raise DataError(f"{path}: line {first_row}: expected {len(names)} columns as in the "
                        f"header on line 1 (data.header = true), found {n_columns}")


def _csv_problem(path: str | Path, text: str, header: bool) -> DataError | None:
    """Find the first ragged line or non-numeric cell, with 1-based line and column."""
    reader = csv.reader(io.StringIO(text))
    width = None
    for row in reader:
        if header and reader.line_num == 1 or not row:
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            return DataError(f"{path}: line {reader.line_num}: expected {width} columns, found {len(row)}")
        for column, cell in enumerate(row, start=1):
            try:
                float(cell)
            except ValueError:
                return DataError(
                    f"{path}: line {reader.line_num}, column {column}: expected a number, found {cell!r}"
                )
    return None


def _checked(
    name: str,
    *,
    train: _Split,
    test: _Split,
    classes: int,
    class_names: Sequence[str] | None,
    checksums: Mapping[str, str],
) -> RawDataset:
    """Run every check on both splits and build the `RawDataset`."""
    if classes == 0 and not isinstance(classes, bool):
        return _checked_regression(name, train=train, test=test, checksums=checksums)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise DataError(f"{name}: classes must be an integer of at least 2, found {classes!r}")
    if class_names is None:
        class_names = tuple(str(k) for k in range(classes))
    elif len(class_names) != classes:
        raise DataError(f"{name}: {classes} classes but {len(class_names)} class names")
    y_train = _checked_split(train, classes)
    y_test = _checked_split(test, classes)
    if train.x.shape[1:] != test.x.shape[1:]:
        raise DataError(
            f"{test.x_source}: samples have shape {test.x.shape[1:]}, "
            f"but {train.x_source} has {train.x.shape[1:]}"
        )
    return RawDataset(
        name=name,
        x_train=train.x,
        y_train=y_train,
        x_test=test.x,
        y_test=y_test,
        classes=classes,
        class_names=tuple(class_names),
        checksums=checksums,
    )


def _checked_regression(name: str, *, train: _Split, test: _Split,
                        checksums: Mapping[str, str]) -> RawDataset:
    """Regression data (`classes=0`): the feature checks, and real-valued targets, float64 `(n, k)`."""
    targets = []
    for split in (train, test):
        _checked_split(split, None)
        y = split.y
        if y.dtype.kind not in "uif" or y.ndim not in (1, 2):
            raise DataError(f"{split.y_source}: expected real-valued targets of shape (n_samples,) "
                            f"or (n_samples, targets), found {y.dtype} of shape {y.shape}")
        if len(y) != len(split.x):
            raise DataError(f"{split.y_source}: {len(y)} targets for {len(split.x)} samples in "
                            f"{split.x_source}")
        y = y.astype(np.float64).reshape(len(y), -1)
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            raise DataError(f"{split.y_source}: expected finite targets, found NaN or infinity "
                            f"at sample {int(np.flatnonzero(bad)[0])}")
        targets.append(y)
    if train.x.shape[1:] != test.x.shape[1:] or targets[0].shape[1] != targets[1].shape[1]:
        raise DataError(f"{test.x_source}: samples have shape {test.x.shape[1:]} and "
                        f"{targets[1].shape[1]} targets, but {train.x_source} has "
                        f"{train.x.shape[1:]} and {targets[0].shape[1]}")
    return RawDataset(name=name, x_train=train.x, y_train=targets[0], x_test=test.x,
                      y_test=targets[1], classes=0, class_names=(), checksums=checksums)


def _checked_split(split: _Split, classes: int | None) -> np.ndarray | None:
    """Check one split; return its labels as int64 `(n_samples,)`."""
    x, y = split.x, split.y
    if x.dtype.kind not in "uif":
        raise DataError(f"{split.x_source}: expected numeric features, found dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{split.x_source}: expected shape (n_samples, ...features), found {x.shape}")
    if len(x) == 0:
        raise DataError(f"{split.x_source}: contains no samples")
    if x.dtype.kind == "f":
        finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(
                f"{split.x_source}: expected finite values, found NaN or infinity "
                f"in {len(bad)} samples (first: sample {bad[0]})"
            )
    if classes is None:  # regression: the targets are checked by the caller
        return None
    if y.ndim != 1:
        raise DataError(f"{split.y_source}: expected labels of shape (n_samples,), found {y.shape}")
    if len(y) != len(x):
        raise DataError(f"{split.y_source}: {len(y)} labels for {len(x)} samples in {split.x_source}")
    if y.dtype.kind == "f":
        integral = np.isfinite(y) & (y == np.round(y))
        if not integral.all():
            first = int(np.flatnonzero(~integral)[0])
            raise DataError(f"{split.y_source}: labels must be integers, found {y[first]} at sample {first}")
    elif y.dtype.kind not in "ui":
        raise DataError(f"{split.y_source}: labels must be integers, found dtype {y.dtype}")
    outside = (y < 0) | (y >= classes)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"{split.y_source}: labels must be in [0, {classes}), found {y[first]} at sample {first}"
        )
    return y.astype(np.int64)
