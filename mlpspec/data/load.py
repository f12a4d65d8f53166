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

import hashlib
import io
import types
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np

from mlpspec.data.download import fetch_file, mirror_order, read_verified, usable_dataset_dir
from mlpspec.data.idx import read_idx, read_idx_bytes
from mlpspec.data.sources import get_builtin
from mlpspec.data.tabular import Column, Table, is_missing, numeric_column, read_table
from mlpspec.errors import DataError
from mlpspec.files import load_arrays, read_json, save_arrays, write_json


@attrs.frozen(eq=False)
class RawDataset:
    """A checked train/test split, as read from disk.

    `x_train` is `(n_train, *sample_shape)` and `x_test` `(n_test, *sample_shape)`
    in the file's dtype (uint8 for MNIST, float64 from CSV); for classification
    `y_train` `(n_train,)` and `y_test` `(n_test,)` are int64 in `[0, classes)`,
    for `task = "regression"` float64 `(n, k)` targets named by `target_names`
    (`classes` 0, `class_names` ()). `checksums` maps each
    file read to the sha256 of the payload actually parsed (decompressed for IDX),
    keyed by file name for built-in datasets and by role (`train`, `test`,
    `train_images`, ...) for local files, so that where a file lies doesn't matter.
    From a CSV file, `columns` describes each feature column (a categorical
    one holds indices into its `values`; NaN is a missing cell) and
    `source_columns` names every column of the file; both are () otherwise.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    class_names: tuple[str, ...]
    checksums: Mapping[str, str] = attrs.field(converter=lambda m: types.MappingProxyType(dict(m)))
    task: str = "classification"
    target_names: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    source_columns: tuple[str, ...] = ()

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def class_counts(self) -> dict[str, np.ndarray]:
        """Samples per class: {"train": (classes,), "test": (classes,)} int64."""
        return {
            "train": np.bincount(self.y_train, minlength=self.classes),
            "test": np.bincount(self.y_test, minlength=self.classes),
        }

    def original_rows(self, x: np.ndarray) -> np.ndarray:
        """Loaded feature columns `(n, len(columns))` back as table rows: an object array
        of floats (NaN when missing) and, for categorical columns, their text (None when
        missing): what `infer.Model.predict` takes for a model trained on this table."""
        rows = np.empty(x.shape, dtype=object)
        for j, column in enumerate(self.columns):
            if column.kind == "categorical":
                rows[:, j] = [None if np.isnan(v) else column.values[int(v)] for v in x[:, j]]
            else:
                rows[:, j] = x[:, j].tolist()
        return rows

    def feature_stats(self, split: str) -> list[dict]:
        """Per feature of `split` ("train"/"test"): `{"name", "kind", "min", "max", "mean",
        "missing"}`; min/max/mean are None for a categorical column (which has
        `categories`, the count of distinct values) or a feature with no value."""
        x = getattr(self, f"x_{split}")
        flat = x.reshape(len(x), -1)
        names = ([column.name for column in self.columns] if self.columns
                 else [str(j) for j in range(flat.shape[1])])
        kinds = [column.kind for column in self.columns] or ["numeric"] * flat.shape[1]
        if flat.dtype.kind == "f":
            missing = np.isnan(flat).sum(axis=0)
        else:
            missing = np.zeros(flat.shape[1], dtype=np.int64)
        present = len(flat) - missing
        stats = []
        with np.errstate(invalid="ignore", divide="ignore"):
            if flat.dtype.kind == "f":
                low, high = np.fmin.reduce(flat, axis=0), np.fmax.reduce(flat, axis=0)
                mean = np.nansum(flat, axis=0) / present
            else:
                low, high = flat.min(axis=0), flat.max(axis=0)
                mean = flat.mean(axis=0, dtype=np.float64)
        for j, (name, kind) in enumerate(zip(names, kinds)):
            entry: dict = {"name": name, "kind": kind, "missing": int(missing[j])}
            if kind == "categorical" or present[j] == 0:
                entry.update(min=None, max=None, mean=None)
                if kind == "categorical":
                    entry["categories"] = int(len(np.unique(flat[~np.isnan(flat[:, j]), j])))
            else:
                entry.update(min=float(low[j]), max=float(high[j]), mean=float(mean[j]))
            stats.append(entry)
        return stats

    def describe(self) -> dict:
        """A JSON-ready summary: counts, per-sample shape, dtype, class balance, checksums.

        `{"name", "task", "classes", "class_names", "checksums": {file: sha256},
        "train" / "test": {"samples", "shape", "dtype", "class_counts": [int] * classes
        (classification) or "targets": [{"name", "min", "max", "mean"}] (regression),
        "features": [{"name", "kind", "min", "max", "mean", "missing"}, ...]}}`;
        `shape` is the per-sample shape, e.g. `[28, 28]`; `features` has one
        entry per feature (see `feature_stats`).
        """
        splits = {"train": (self.x_train, self.y_train), "test": (self.x_test, self.y_test)}
        counts = self.class_counts() if self.task != "regression" else {}
        out = {"name": self.name, "task": self.task, "classes": self.classes,
               "class_names": list(self.class_names)}
        if self.columns:
            out["columns"] = [column.name for column in self.columns]
        for split, (x, y) in splits.items():
            part: dict = {"samples": len(x), "shape": list(x.shape[1:]), "dtype": x.dtype.name}
            if self.task == "regression":
                part["targets"] = [{"name": name, "min": float(y[:, k].min()),
                                    "max": float(y[:, k].max()), "mean": float(y[:, k].mean())}
                                   for k, name in enumerate(self.target_names
                                                            or target_names_for(y.shape[1]))]
            else:
                part["class_counts"] = counts[split].tolist()
            part["features"] = self.feature_stats(split)
            out[split] = part
        out["checksums"] = dict(self.checksums)
        return out

    def save(self, folder: Path) -> None:
        """Write the arrays (`<name>.npy`) and `meta.json` (the other fields) into `folder`."""
        save_arrays(folder, {name: getattr(self, name) for name in _ARRAYS})
        write_json(folder / "meta.json", {"name": self.name, "classes": self.classes,
                                          "class_names": list(self.class_names),
                                          "checksums": dict(self.checksums),
                                          "task": self.task,
                                          "target_names": list(self.target_names),
                                          "columns": [c.to_meta() for c in self.columns],
                                          "source_columns": list(self.source_columns)})

    @classmethod
    def load(cls, folder: Path) -> RawDataset:
        """What `save` wrote to `folder`."""
        meta = read_json(folder / "meta.json")
        arrays = load_arrays(folder, _ARRAYS)
        return cls(meta["name"], arrays["x_train"], arrays["y_train"], arrays["x_test"],
                   arrays["y_test"], meta["classes"], tuple(meta["class_names"]), meta["checksums"],
                   meta.get("task", "classification"), tuple(meta.get("target_names", ())),
                   tuple(Column.from_meta(c) for c in meta.get("columns", ())),
                   tuple(meta.get("source_columns", ())))


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
    task: str = "classification",
) -> RawDataset:
    """Load a train and a test `.npz`, each holding `x` (n, ...) and `y` (n,)
    (for `task = "regression"`: float targets `(n,)` or `(n, k)`)."""
    return _load_pair(train, test, ".npz file", _read_npz, classes=classes, name=name,
                      class_names=class_names, task=task)


def load_csv(
    train: str | Path,
    test: str | Path,
    *,
    classes: int = 0,
    label_column: int | str = 0,
    header: bool = False,
    features: Sequence[str] = (),
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
    missing: str = "error",
    targets: Sequence[str] = (),
    task: str = "classification",
    name: str | None = None,
    class_names: Sequence[str] | None = None,
) -> RawDataset:
    """Load a train and a test CSV: comma-separated, one sample per line.

    `label_column` (an index, negative from the end, or a header name) holds
    the label; the features are `features` (header names) or every other
    column not in `exclude`. `header=True` reads the first line as the
    column names. Features come back as float64 `(n_samples, n_features)`:
    numbers, or for `categorical` columns indices into `RawDataset.columns[j].values`;
    a missing cell is NaN, allowed only when `missing` is not "error".
    Labels: with `classes > 0`, integers in `[0, classes)`; with `classes = 0`,
    the distinct labels of the training file (sorted, numerically if all are
    numbers) become the classes and their names. For `task = "regression"`
    the label column holds float targets: `y` is float64 `(n, 1)`, or `(n, k)`
    for the k columns named in `targets` (which then replace `label_column`).
    """
    if targets:
        if task != "regression":
            raise DataError(f"{train}: data.targets names regression targets, and the task is "
                            f"{task!r}; a class label column is data.label_column")
        if not header:
            raise DataError(f"{train}: data.targets names columns, which needs a header: set "
                            f"data.header = true")
        if len(set(targets)) != len(targets):
            raise DataError(f"{train}: data.targets: a column is listed twice")
        label_column, exclude = targets[0], (*exclude, *targets[1:])
        for listed, key in ((features, "features"), (categorical, "categorical")):
            both = [t for t in targets if t in listed]
            if both:
                raise DataError(f"{train}: data.{key}: {both[0]!r} is a target column (data.targets)")
    tables = {}
    checksums = {}
    for role, path in (("train", train), ("test", test)):
        data = _read_bytes(path, "CSV file")
        checksums[role] = hashlib.sha256(data).hexdigest()
        tables[role] = read_table(str(path), data, header=header, numeric=not categorical)
    names = tables["train"].names
    roles = {"train": train, "test": test}
    for role, path in roles.items():  # before targets[1:] are checked as data.exclude
        absent = [t for t in targets if t not in tables[role].names]
        if absent:
            raise DataError(f"{path}: data.targets: no column {absent[0]!r} in the header "
                            f"(columns: {_show_list(tables[role].names)})")
    selected = {role: _select_columns(str(path), tables[role].names, label_column=label_column,
                                      header=header, features=features, exclude=exclude,
                                      categorical=categorical)
                for role, path in roles.items()}
    test_names = tables["test"].names
    if header and test_names != names and sorted(test_names) == sorted(names):
        named = features or exclude or categorical or isinstance(label_column, str)
        if not named:  # positions would pair different columns
            raise DataError(f"{test}: the header names the columns in another order than {train} "
                            f"({_show_list(test_names)} against {_show_list(names)}); choose "
                            f"columns by name (data.label_column, data.features) or reorder them")
    label, chosen = selected["train"]
    loaded = {}
    for role, path in roles.items():
        table, (_, own) = tables[role], selected[role]
        x = np.empty((len(table), len(own)))
        for k, j in enumerate(own):
            if table.names[j] in categorical:
                x[:, k] = np.nan  # filled below, once both files' categories are known
            else:
                x[:, k] = numeric_column(str(path), table, j, header=header)
        loaded[role] = x
    columns = []
    same_width = len(selected["test"][1]) == len(chosen)
    for k, j in enumerate(chosen):
        if names[j] not in categorical:
            columns.append(Column(names[j], "numeric"))
            continue
        cells = {role: [row[tables[role].names.index(names[j])].strip() for row in tables[role].rows]
                 for role in tables if role == "train" or same_width}
        values = sorted({cell for role in cells for cell in cells[role] if not is_missing(cell)})
        index = {value: float(i) for i, value in enumerate(values)}
        for role in cells:
            loaded[role][:, k] = [np.nan if is_missing(c) else index[c] for c in cells[role]]
        columns.append(Column(names[j], "categorical", tuple(values)))
    for role, path in roles.items():
        if missing == "error":
            _refuse_missing(str(path), tables[role], loaded[role], selected[role][1], header)
    # Regression targets are checked (and their missing cells named) below, as targets.
    labels = {role: _label_cells(str(path), tables[role], selected[role][0])
              for role, path in roles.items()} if task != "regression" else {}
    where = f"column {label + 1} ({names[label]!r}, labels)" if header else f"column {label + 1} (labels)"
    if task == "regression":
        target_names: tuple[str, ...] = tuple(targets) or (names[label],)
        y = {}
        for role, path in roles.items():
            table = tables[role]
            for target in target_names:
                if target not in table.names:
                    raise DataError(f"{path}: data.targets: no column {target!r} in the header "
                                    f"(columns: {_show_list(table.names)})")
            columns_y = []
            for target in target_names:
                j = table.names.index(target) if header else selected[role][0]
                values = numeric_column(str(path), table, j, header=header,
                                        what="a number (a regression target)")
                if np.isnan(values).any():
                    i = int(np.argmax(np.isnan(values)))
                    shown = f" ({table.names[j]!r})" if header else ""
                    raise DataError(f"{path}: line {table.lines[i]}, column {j + 1}{shown}: missing "
                                    f"target {table.rows[i][j]!r}; every sample needs its targets "
                                    f"(data.missing fills features only)")
                columns_y.append(values)
            y[role] = np.stack(columns_y, axis=1)
        classes, class_names = 0, ()
    elif classes:
        y = {role: numeric_column(str(path), tables[role], selected[role][0], header=header,
                                  what=f"an integer label in [0, {classes}) (data.classes = {classes}; "
                                       f"0 takes the classes from the training labels)")
             for role, path in (("train", train), ("test", test))}
        target_names = ()
    else:
        class_names = _class_names(labels["train"])
        if len(class_names) < 2:
            raise DataError(f"{train}: {where}: expected at least 2 distinct labels, found "
                            f"{len(class_names)} ({_show_list(class_names)}); is "
                            f"data.label_column the label column?")
        classes = len(class_names)
        position = {value: k for k, value in enumerate(class_names)}
        y = {}
        for role, path in (("train", train), ("test", test)):
            codes = np.array([position.get(cell, -1) for cell in labels[role]], dtype=np.int64)
            if (codes < 0).any():
                i = int(np.argmax(codes < 0))
                raise DataError(f"{path}: line {tables[role].lines[i]}, {where}: label "
                                f"{labels[role][i]!r} is not among the classes of data.train "
                                f"({_show_list(class_names)}); the classes come from the training "
                                f"file's labels (data.classes = 0): add samples of it to "
                                f"data.train or remove them from data.test")
            y[role] = codes
        target_names = ()
    splits = {path: _Split(loaded[role], y[role], f"{path}: features",
                           f"{path}: {where}" if role == "train" else
                           f"{path}: " + where.replace(str(label + 1), str(selected[role][0] + 1), 1),
                           nan_ok=missing != "error")
              for role, path in (("train", train), ("test", test))}
    dataset = _checked(name or Path(train).stem, train=splits[train], test=splits[test],
                       classes=classes, class_names=class_names, checksums=checksums, task=task)
    return attrs.evolve(dataset, columns=tuple(columns), source_columns=names,
                        target_names=target_names)


def _select_columns(path: str, names: Sequence[str], *, label_column: int | str, header: bool,
                    features: Sequence[str], exclude: Sequence[str],
                    categorical: Sequence[str]) -> tuple[int, list[int]]:
    """`(label index, feature indices)` from the spec's column keys; errors name the key."""
    shown = _show_list(names)
    for key, listed in (("features", features), ("exclude", exclude), ("categorical", categorical)):
        if listed and not header:
            raise DataError(f"{path}: data.{key} names columns, which needs a header: set "
                            f"data.header = true (and give the file a header line)")
        for column in listed:
            if column not in names:
                raise DataError(f"{path}: data.{key}: no column {column!r} in the header "
                                f"(columns: {shown})")
    referenced = [*features, *exclude, *categorical]
    if isinstance(label_column, str):
        referenced.append(label_column)
    for column in referenced:
        if column in names and list(names).count(column) > 1:
            raise DataError(f"{path}: column name {column!r} appears {list(names).count(column)} "
                            f"times in the header, so it cannot choose a column")
    if isinstance(label_column, str):
        if not header:
            raise DataError(f"{path}: data.label_column = {label_column!r} names a column, which "
                            f"needs a header: set data.header = true, or give the column's index")
        if label_column not in names:
            raise DataError(f"{path}: data.label_column: no column {label_column!r} in the header "
                            f"(columns: {shown})")
        label = names.index(label_column)
    else:
        n = len(names)
        if n < 2:
            raise DataError(f"{path}: expected a label column and at least one feature column, "
                            f"found {n} column")
        if not -n <= label_column < n:
            raise DataError(f"{path}: label_column {label_column} is out of range for {n} columns "
                            f"(data.label_column: 0 to {n - 1}, or -1 for the last)")
        label = label_column % n
    for key, listed in (("features", features), ("exclude", exclude), ("categorical", categorical)):
        if names[label] in listed:
            raise DataError(f"{path}: data.{key}: {names[label]!r} is the label column "
                            f"(data.label_column)")
    if features:
        chosen = [names.index(column) for column in features]
        if len(set(chosen)) != len(chosen):
            raise DataError(f"{path}: data.features: a column is listed twice")
    else:
        chosen = [j for j in range(len(names)) if j != label and names[j] not in exclude]
    outside = [column for column in categorical if names.index(column) not in chosen]
    if outside:
        raise DataError(f"{path}: data.categorical: {outside[0]!r} is not a feature column "
                        f"(see data.features and data.exclude)")
    if not chosen:
        raise DataError(f"{path}: no feature column is left (data.features, data.exclude)")
    return label, chosen


def _refuse_missing(path: str, table: Table, x: np.ndarray, chosen: Sequence[int],
                    header: bool) -> None:
    """With `missing = "error"`, name the first missing cell and the key that allows it."""
    holes = np.isnan(x)
    if holes.any():
        i, k = (int(v) for v in np.argwhere(holes)[0])
        j = chosen[k]
        name = f" ({table.names[j]!r})" if header else ""
        raise DataError(f"{path}: line {table.lines[i]}, column {j + 1}{name}: "
                        f"missing value ({table.rows[i][j]!r}); set data.missing = \"mean\", "
                        f"\"median\" or \"most_frequent\" to fill missing values from the "
                        f"training split ({int(holes.sum())} missing in this file)")


def _label_cells(path: str, table: Table, label: int) -> list[str]:
    cells = [cell.strip() for cell in table.cells(label)]
    for i, cell in enumerate(cells):
        if is_missing(cell):
            raise DataError(f"{path}: line {table.lines[i]}, column {label + 1} "
                            f"({table.names[label]!r}, the label): missing label {cell!r}; every "
                            f"sample needs one (is data.label_column the label column?)")
    return cells


def _class_names(cells: Sequence[str]) -> tuple[str, ...]:
    """The distinct labels sorted: as numbers when all are numbers (`2` before `10`)."""
    distinct = set(cells)
    try:
        return tuple(sorted(distinct, key=float))
    except ValueError:
        return tuple(sorted(distinct))


def _show_list(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(name) for name in list(names)[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _load_pair(train: str | Path, test: str | Path, what: str,
               read: Callable[[str | Path, bytes], "_Split"], *, classes: int,
               name: str | None, class_names: Sequence[str] | None,
               task: str = "classification") -> RawDataset:
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
        task=task,
    )


@attrs.frozen(eq=False)
class _Split:
    """Features and labels of one split, with the names errors should use."""

    x: np.ndarray
    y: np.ndarray
    x_source: str
    y_source: str
    nan_ok: bool = False  # missing values (NaN) allowed, filled in by preprocessing


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


def _checked(
    name: str,
    *,
    train: _Split,
    test: _Split,
    classes: int,
    class_names: Sequence[str] | None,
    checksums: Mapping[str, str],
    task: str = "classification",
) -> RawDataset:
    """Run every check on both splits and build the `RawDataset`."""
    if task == "regression":
        y_train, y_test = _checked_targets(train), _checked_targets(test)
        if train.x.shape[1:] != test.x.shape[1:]:
            raise DataError(f"{test.x_source}: samples have shape {test.x.shape[1:]}, "
                            f"but {train.x_source} has {train.x.shape[1:]}")
        if y_train.shape[1] != y_test.shape[1]:
            raise DataError(f"{test.y_source}: {y_test.shape[1]} targets per sample, but "
                            f"{train.y_source} has {y_train.shape[1]}")
        return RawDataset(name=name, x_train=train.x, y_train=y_train, x_test=test.x,
                          y_test=y_test, classes=0, class_names=(), checksums=checksums,
                          task="regression")
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


def _checked_targets(split: _Split) -> np.ndarray:
    """Check one split of a regression dataset; return its targets as float64 `(n, k)`."""
    _checked_features(split)
    y = split.y
    if y.dtype.kind not in "biuf":
        raise DataError(f"{split.y_source}: expected numeric targets, found dtype {y.dtype}")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or len(y) != len(split.x):
        raise DataError(f"{split.y_source}: expected targets of shape ({len(split.x)},) or "
                        f"({len(split.x)}, k), found {y.shape}")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        first = int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])
        raise DataError(f"{split.y_source}: expected finite targets, found {y[first].tolist()} "
                        f"at sample {first}")
    return y


def _checked_features(split: _Split) -> None:
    x = split.x
    if x.dtype.kind not in "uif":
        raise DataError(f"{split.x_source}: expected numeric features, found dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{split.x_source}: expected shape (n_samples, ...features), found {x.shape}")
    if len(x) == 0:
        raise DataError(f"{split.x_source}: contains no samples")
    if x.dtype.kind == "f":
        values = x.reshape(len(x), -1)
        finite = (~np.isinf(values) if split.nan_ok else np.isfinite(values)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(
                f"{split.x_source}: expected finite values, found NaN or infinity "
                f"in {len(bad)} samples (first: sample {bad[0]})"
            )


def _checked_split(split: _Split, classes: int) -> np.ndarray:
    """Check one split; return its labels as int64 `(n_samples,)`."""
    x, y = split.x, split.y
    _checked_features(split)
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
            f"{split.y_source}: labels must be in [0, {classes}), found {y[first]} at sample "
            f"{first} (data.classes = {classes})"
        )
    return y.astype(np.int64)


def target_names_for(k: int) -> tuple[str, ...]:
    """Names of `k` unnamed target columns (an npz `y`): `("y",)`, or `("y0", "y1", ...)`;
    `data info`, the model file and `predict` all use these."""
    return ("y",) if k == 1 else tuple(f"y{j}" for j in range(k))
