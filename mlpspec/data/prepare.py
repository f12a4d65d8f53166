"""From a `[data]` spec to network-ready arrays: load, split, scale, encode.

    raw = load_raw(spec.data, base_dir)          # checked arrays as on disk
    data = prepare(raw, spec.data, seed, dtype)  # splits, scaling, targets
    data.save(folder); Prepared.load(folder)     # the preprocess stage's cache entry

Everything fitted (a table's categories and fill values, `TabularEncoder`;
the `standardize`/`minmax` scaling; regression's target scaling) is fitted
on the training split only, after the validation samples were taken out of
it, so no evaluation sample leaks into training. The validation split is
reproducible from the root seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import numpy as np

from mlpspec import rng
from mlpspec.data.load import RawDataset, load_builtin, load_csv, load_idx, load_npz, target_names_for
from mlpspec.data.tabular import TabularEncoder
from mlpspec.errors import DataError
from mlpspec.files import read_json, save_arrays, write_json
from mlpspec.spec import model


def load_raw(data: model.DataSpec, base_dir: Path,
             log: Callable[[str], None] | None = None, *,
             task: str = "classification") -> RawDataset:
    """Read the dataset a spec declares; relative paths are taken from `base_dir`.

    `task` (the spec's top-level key): for "regression" the labels are float targets.
    """
    source = data.source
    if isinstance(source, model.BuiltinSource):
        return load_builtin(model.name_of(source), source.mirrors, log=log)
    # Local files: an error about one of them also names its spec key.
    paths = {key: base_dir / name for key, name in source.files().items()}
    try:
        match source:
            case model.IdxSource():
                return load_idx(paths["train_images"], paths["train_labels"], paths["test_images"],
                                paths["test_labels"], classes=source.classes, name="idx")
            case model.NpzSource():
                if task != "regression" and source.classes < 2:
                    raise DataError(f"data.classes: expected the number of classes (at least 2; "
                                    f"labels lie in [0, classes)), found {source.classes}; 0 is "
                                    f"for task = \"regression\"")
                return load_npz(paths["train"], paths["test"], classes=source.classes, name="npz",
                                task=task)
            case model.CsvSource():
                return load_csv(paths["train"], paths["test"], classes=source.classes,
                                label_column=source.label_column, header=source.header,
                                features=source.features, exclude=source.exclude,
                                categorical=source.categorical, missing=source.missing,
                                targets=source.targets, task=task, name="csv")
    except DataError as error:
        message = str(error)
        for key, path in paths.items():
            if message.startswith(str(path)):
                raise DataError(f"data.{key}: {message}") from None
        raise
    raise TypeError(f"unhandled data source {type(source).__name__}")  # a bug, not user input


@attrs.frozen
class Scaling:
    """The input transform applied to every split (and stored with exported models).

    `x_scaled = (x - offset) / scale`, with `offset` and `scale` scalars or
    per-feature arrays of shape `(n_features,)`.
    """

    kind: str
    offset: np.ndarray
    scale: np.ndarray

    def invert(self, z: np.ndarray) -> np.ndarray:
        """Scaled values `(n, k)` back to original units, float64: `z * scale + offset`.

        The regression model's output: `infer.py` repeats these operations.
        """
        out = np.asarray(z, dtype=np.float64)
        if self.kind == "none":
            return out.copy() if out is z else out
        out = out * self.scale
        out += self.offset
        return out

    def apply(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        out = np.asarray(x, dtype=dtype)
        if self.kind == "none":
            return out.copy() if out is x else out
        out = out - self.offset.astype(dtype)
        out /= self.scale.astype(dtype)
        return out


@attrs.frozen(eq=False)
class RawInput:
    """What the raw training samples looked like: the model file's input contract.

    `dtype` is the NumPy name of the samples' dtype as the data source gave
    them (`"uint8"` for MNIST, `"float64"` from CSV); `whole` whether every
    value was a whole number (pixels read from a CSV file are); `minimum` and
    `maximum` are float64 `(n_features,)`, each feature's range over the
    training split.
    """

    dtype: str
    whole: bool
    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def of(cls, x_train: np.ndarray) -> RawInput:
        """The contract of raw training samples `(n, n_features)` (n >= 1)."""
        whole = x_train.dtype.kind != "f" or bool(np.all(np.floor(x_train) == x_train))
        return cls(x_train.dtype.name, whole, x_train.min(axis=0).astype(np.float64),
                   x_train.max(axis=0).astype(np.float64))

    def to_meta(self) -> dict:
        """As JSON-ready data (exact: JSON keeps every float64)."""
        return {"dtype": self.dtype, "whole": self.whole, "min": self.minimum.tolist(),
                "max": self.maximum.tolist()}

    @classmethod
    def from_meta(cls, meta: dict) -> RawInput:
        return cls(meta["dtype"], meta["whole"], np.array(meta["min"], dtype=np.float64),
                   np.array(meta["max"], dtype=np.float64))


@attrs.frozen(eq=False)
class Prepared:
    """Network-ready splits.

    `x_*` are `(n, n_features)` in the compute dtype. Classification: `y_*`
    are int64 labels `(n,)`; `t_train` are the training targets the loss sees:
    one-hot `(n, classes)` in the compute dtype, or the labels themselves.
    Regression (`task`): `y_*` are float64 raw targets `(n, k)` named by
    `target_names`, `t_train` is `target_scaling.apply(y_train)` in the compute
    dtype, `classes` is 0 and `class_names` ().
    Validation arrays are empty (0 rows) when the spec takes no validation set.
    `name` and `checksums` say which data they came from (for the model file);
    `raw_input` describes the raw training split (the model file's input contract);
    `encoder` is the fitted column handling of tabular (CSV) data, None otherwise.

    Folder layout (`save`/`load`): `<split>.npy` for the six `x_*`/`y_*`
    arrays, `scaling_offset.npy` and `scaling_scale.npy` (and
    `target_offset.npy`/`target_scale.npy` for regression), and `meta.json`
    with the other fields (`one_hot`: whether `t_train` is the one-hot
    encoding of `y_train`, rebuilt on load, or `y_train` itself).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    t_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    class_names: tuple[str, ...]
    sample_shape: tuple[int, ...]
    scaling: Scaling
    name: str = "data"
    checksums: Mapping[str, str] = attrs.Factory(dict)
    raw_input: RawInput | None = None
    encoder: TabularEncoder | None = None
    task: str = "classification"
    target_names: tuple[str, ...] = ()
    target_scaling: Scaling | None = None

    def save(self, folder: Path) -> None:
        """Write the splits and what describes them into `folder`."""
        folder = Path(folder)
        save_arrays(folder, {split: getattr(self, split) for split in _SPLITS})
        save_arrays(folder, {"scaling_offset": self.scaling.offset,
                             "scaling_scale": self.scaling.scale})
        if self.target_scaling is not None:
            save_arrays(folder, {"target_offset": self.target_scaling.offset,
                                 "target_scale": self.target_scaling.scale})
        write_json(folder / "meta.json", {
            "name": self.name, "classes": self.classes, "class_names": list(self.class_names),
            "sample_shape": list(self.sample_shape), "scaling": self.scaling.kind,
            "one_hot": self.task != "regression" and self.t_train.ndim == 2,
            "checksums": dict(self.checksums),
            "raw_input": self.raw_input.to_meta() if self.raw_input is not None else None,
            "encoder": self.encoder.to_document() if self.encoder is not None else None,
            "task": self.task, "target_names": list(self.target_names),
            "target_scaling": (self.target_scaling.kind if self.target_scaling is not None
                               else None)})

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = False) -> Prepared:
        """What `save` wrote to `folder`.

        `mmap=True` maps the arrays read-only instead of reading them: cheap
        when only the small fields (scaling, shapes, names) are wanted.
        """
        folder = Path(folder)
        meta = read_json(folder / "meta.json")
        mode = "r" if mmap else None
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
                  for name in (*_SPLITS, "scaling_offset", "scaling_scale")}
        scaling = Scaling(meta["scaling"], np.array(arrays["scaling_offset"]),
                          np.array(arrays["scaling_scale"]))  # small: copied, not mapped
        target_scaling = None
        if meta.get("target_scaling") is not None:
            target_scaling = Scaling(meta["target_scaling"],
                                     np.load(folder / "target_offset.npy", allow_pickle=False),
                                     np.load(folder / "target_scale.npy", allow_pickle=False))
            targets = target_scaling.apply(arrays["y_train"], arrays["x_train"].dtype)
        elif meta["one_hot"]:
            targets = one_hot(arrays["y_train"], meta["classes"], arrays["x_train"].dtype)
        else:
            targets = arrays["y_train"]
        encoder = meta.get("encoder")
        return cls(arrays["x_train"], arrays["y_train"], targets, arrays["x_val"], arrays["y_val"],
                   arrays["x_test"], arrays["y_test"], meta["classes"], tuple(meta["class_names"]),
                   tuple(meta["sample_shape"]), scaling, meta["name"], meta["checksums"],
                   RawInput.from_meta(meta["raw_input"]) if meta.get("raw_input") else None,
                   TabularEncoder.from_document(encoder) if encoder else None,
                   meta.get("task", "classification"), tuple(meta.get("target_names", ())),
                   target_scaling)


_SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def prepare(raw: RawDataset, data: model.DataSpec, seed: int, dtype: str | np.dtype,
            log: Callable[[str], None] | None = None) -> Prepared:
    """Split off validation, encode columns, fit and apply scaling, flatten, encode targets.

    Everything fitted (categories, fill values, scaling, target scaling) is
    fitted on the training split after the validation samples left it.
    `log` receives warnings about the data (once per call).
    """
    dtype = np.dtype(dtype)
    regression = raw.task == "regression"
    x_train, y_train, x_val, y_val, x_test, y_test = split_validation(raw, data.validation, seed)

    encoder = None
    if raw.columns:
        source = data.source
        missing = source.missing if isinstance(source, model.CsvSource) else "error"
        unseen = source.unseen if isinstance(source, model.CsvSource) else "error"
        label = ((raw.target_names or ("label",)) if regression else
                 ((raw.source_columns[_label_index(source, raw)],)
                  if isinstance(source, model.CsvSource) else ()))
        encoder = TabularEncoder.fit(x_train, raw.columns, source=raw.source_columns, label=label,
                                     missing=missing, unseen=unseen)
        pool = data.validation.take_from
        val_from = "data.test" if pool == "test" else "data.train"
        x_train = encoder.encode(x_train, raw.columns, "data.train")
        x_val = encoder.encode(x_val, raw.columns, f"{val_from} (validation split)")
        x_test = encoder.encode(x_test, raw.columns, "data.test")

    flatten = data.preprocess.flatten

    def shaped(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), math.prod(x.shape[1:])) if flatten else x

    x_train, x_val, x_test = shaped(x_train), shaped(x_val), shaped(x_test)
    if x_train.ndim != 2:
        raise DataError(f"data.preprocess.flatten: dense layers take flat inputs and "
                        f"{raw.name} samples have shape {raw.sample_shape}; set flatten = true")
    raw_input = RawInput.of(x_train.reshape(len(x_train), -1))
    if encoder is not None and any(isinstance(f.fill, float) and not f.fill.is_integer()
                                   for f in encoder.features):
        # A fill value (a mean, say) is a value the model must accept at inference
        # even when no training row needed it.
        raw_input = attrs.evolve(raw_input, whole=False)
    scaling = fit_scaling(data.preprocess.scale, x_train)
    if scaling.kind == "unit" and log is not None:
        top = float(raw_input.maximum.max())
        if top <= 64 or top > 255:
            log(f"warning: data.preprocess.scale = \"unit\" divides by 255, but the training "
                f"data's largest value is {top:g}: inputs land in [{raw_input.minimum.min() / 255:.3g}, "
                f"{top / 255:.3g}]; \"standardize\" or \"minmax\" fit the data's own range")
    x_train, x_val, x_test = (scaling.apply(x, dtype) for x in (x_train, x_val, x_test))
    sample_shape = (x_train.shape[1],) if encoder is not None else raw.sample_shape
    target_scaling = None
    if regression:
        kind = data.preprocess.target_scale
        target_scaling = fit_scaling(kind, y_train)
        t_train = target_scaling.apply(y_train, dtype)
        target_names = raw.target_names or target_names_for(y_train.shape[1])
    elif data.preprocess.one_hot:
        t_train = one_hot(y_train, raw.classes, dtype)
        target_names = ()
    else:
        t_train = y_train
        target_names = ()
    return Prepared(x_train, y_train, t_train, x_val, y_val, x_test, y_test, raw.classes,
                    raw.class_names, sample_shape, scaling, raw.name, dict(raw.checksums),
                    raw_input, encoder, raw.task, target_names, target_scaling)


def _label_index(source: model.CsvSource, raw: RawDataset) -> int:
    column = source.label_column
    if isinstance(column, str):
        return raw.source_columns.index(column)
    return column % len(raw.source_columns)



def split_validation(raw: RawDataset, validation: model.ValidationSpec, seed: int):
    """`(x_train, y_train, x_val, y_val, x_test, y_test)` as the spec splits them.

    The validation samples come out of the test or the training set, chosen
    from the root seed; with `take_from = "none"` the validation arrays are empty.
    """
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if validation.take_from == "none":
        return x_train, y_train, x_train[:0], y_train[:0], x_test, y_test
    pool = validation.take_from
    labels = y_test if pool == "test" else y_train
    # Stratify by class only: float targets (regression) are not classes, and
    # "stratifying" by each distinct value would hold out the smallest ones.
    stratify = validation.stratify and labels.ndim == 1 and labels.dtype.kind in "iub"
    keep, held = split_indices(labels, validation.size, stratify=stratify,
                               shuffle=validation.shuffle,
                               generator=rng.generator(seed, "validation-split"),
                               what=f"data.validation.size ({raw.name} {pool} set)")
    if pool == "test":
        return x_train, y_train, x_test[held], y_test[held], x_test[keep], y_test[keep]
    return x_train[keep], y_train[keep], x_train[held], y_train[held], x_test, y_test


def fit_scaling(kind: str, x_train: np.ndarray) -> Scaling:
    """The scaling `kind` fitted on the training features `(n, n_features)`."""
    if kind == "unit":
        return Scaling(kind, np.array(0.0), np.array(255.0))
    if kind == "minmax":
        low = x_train.min(axis=0).astype(np.float64)
        span = x_train.max(axis=0).astype(np.float64) - low
        span[span == 0.0] = 1.0  # a constant feature maps to 0
        return Scaling(kind, low, span)
    if kind == "standardize":
        mean = x_train.mean(axis=0, dtype=np.float64)
        std = x_train.std(axis=0, dtype=np.float64)
        # A constant feature (MNIST's border pixels) carries no information:
        # scale 1 keeps it at 0 instead of dividing by zero.
        std[std == 0.0] = 1.0
        return Scaling(kind, mean, std)
    return Scaling("none", np.array(0.0), np.array(1.0))


def one_hot(labels: np.ndarray, classes: int, dtype: np.dtype) -> np.ndarray:
    """`(n,)` integer labels to `(n, classes)` one-hot rows."""
    out = np.zeros((len(labels), classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


def split_indices(labels: np.ndarray, size: int | float, *, stratify: bool, shuffle: bool,
                  generator: np.random.Generator, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices `(kept, held_out)` taking `size` samples (a count or a fraction) out.

    Both index arrays are sorted, so the samples keep their file order.
    Stratified splits hold out each class in proportion to its share.
    """
    n = len(labels)
    count = model.held_out_count(size, n)
    if not 0 < count < n:
        raise DataError(f"{what}: expected between 1 and {n - 1} samples, found {size!r} "
                        f"({count} of {n})")
    if stratify:
        classes, per_class = np.unique(labels, return_counts=True)
        quota = per_class * count / n
        take = np.floor(quota).astype(np.int64)
        # Largest remainders get the samples the floors left over.
        leftover = count - int(take.sum())
        take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
        held_parts = []
        for cls, k in zip(classes, take):
            members = np.flatnonzero(labels == cls)
            if shuffle:
                members = generator.permutation(members)
            held_parts.append(members[:k])
        held = np.sort(np.concatenate(held_parts))
    elif shuffle:
        held = np.sort(generator.permutation(n)[:count])
    else:
        held = np.arange(count)
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held
