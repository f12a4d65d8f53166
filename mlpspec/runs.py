"""The run folder: what `mlpspec run --out` writes, replaced whole or not at all.

    check_replaceable(folder)                       # before any work
    write_run_folder(folder, copies={...}, texts={...}, name=spec.name)

The folder is filled under a temporary name beside it, then swapped in
(`mlpspec.atomic`), so a failed or killed run leaves the earlier run folder
as it was. Only a missing folder, an empty one or an earlier run folder (it
holds the `RUN_MARKER` file) is replaced; anything else is an error. What a
killed run left beside the folder is removed by the next run writing it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mlpspec import atomic
from mlpspec.errors import MlpspecError

RUN_MARKER = ".mlpspec-run"


def check_replaceable(folder: Path) -> None:
    """Refuse to replace anything but a missing or empty folder or an earlier run folder."""
    if not folder.exists():
        parent = next(p for p in folder.parents if p.exists())
        if not parent.is_dir():
            raise MlpspecError(f"--out {folder}: {parent} is not a folder")
        try:  # find out now, not after an hour of training, that nothing can be made there
            os.rmdir(tempfile.mkdtemp(prefix=".mlpspec-probe-", dir=parent))
        except OSError as error:
            raise MlpspecError(f"--out {folder}: cannot create the run folder in {parent}: "
                               f"{error.strerror or error}") from None
        return
    if not folder.is_dir():
        raise MlpspecError(f"--out {folder}: exists and is not a folder")
    if (folder / RUN_MARKER).is_file() or not any(folder.iterdir()):
        return
    raise MlpspecError(f"--out {folder}: exists and is not an mlpspec run folder "
                       f"(no {RUN_MARKER} in it); choose another --out or remove it")


def tidy(folder: Path) -> None:
    """Remove what killed runs left beside `folder` (restoring a run folder set aside)."""
    folder = Path(folder).resolve()
    atomic.tidy(folder.parent, folder.name)


def write_run_folder(folder: Path, *, copies: Mapping[str, Path], texts: Mapping[str, str],
                     name: str) -> Path:
    """Replace `folder` with one holding `copies` (name -> file to copy) and `texts`.

    `name` (the spec's) goes into the `RUN_MARKER` file. Errors are
    `MlpspecError`s naming the folder.
    """
    shown, folder = Path(folder), Path(folder).resolve()
    check_replaceable(folder)
    try:
        with atomic.staging_folder(folder) as staging:
            for filename, source in copies.items():
                shutil.copyfile(source, staging / filename)
            for filename, text in texts.items():
                (staging / filename).write_text(text)
            (staging / RUN_MARKER).write_text(f"{name}\n")
            atomic.swap_in(staging, folder)
    except OSError as error:
        raise MlpspecError(f"--out {folder}: cannot write the run folder: "
                           f"{error.strerror or error}") from None
    return shown


# ------------------------------------------------------------------ listing and comparing


def spec_hash(spec_text: str) -> str:
    """A short name for a resolved spec: the first 10 hex digits of its sha256."""
    import hashlib

    return hashlib.sha256(spec_text.encode()).hexdigest()[:10]


def find_runs(root: Path) -> list[Path]:
    """Run folders under `root` (any depth: sweeps keep theirs in `<sweep>/runs/`), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise MlpspecError(f"{root}: no such folder")
    return sorted(marker.parent for marker in root.rglob(RUN_MARKER) if marker.is_file())


REGRESSION_METRICS = ("rmse", "mae", "r2")


def describe_run(folder: Path) -> dict:
    """Name, date, task, headline metrics and spec hash of a run folder; missing parts are None.

    Per split ("validation", "test"): `<split>_loss`, and `<split>_accuracy` for
    classification or `<split>_rmse`, `_mae`, `_r2` (original units) for regression.
    """
    import json
    import time

    folder = Path(folder)
    if not (folder / RUN_MARKER).is_file():
        raise MlpspecError(f"{folder}: not an mlpspec run folder (no {RUN_MARKER} in it)")
    info = {"folder": str(folder), "name": (folder / RUN_MARKER).read_text().strip(),
            "date": time.strftime("%Y-%m-%d %H:%M", time.localtime((folder / RUN_MARKER).stat().st_mtime)),
            "spec_hash": None, "validation_accuracy": None, "test_accuracy": None,
            "train_seconds": None}
    spec_file = folder / "spec.resolved.toml"
    if spec_file.is_file():
        info["spec_hash"] = spec_hash(spec_file.read_text())
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    regression = "target_names" in metrics
    info["task"] = None if not metrics else "regression" if regression else "classification"
    for split in ("validation", "test"):
        figures = metrics.get(split) or {}
        info[f"{split}_accuracy"] = figures.get("accuracy")
        info[f"{split}_loss"] = figures.get("loss")
        for name in REGRESSION_METRICS if regression else ():
            info[f"{split}_{name}"] = figures.get(name)
    info["train_seconds"] = metrics.get("train_seconds")
    return info


def flat_spec(folder: Path) -> dict[str, object]:
    """The run's resolved spec as {dotted key: value} (`network.layers[0].units`)."""
    import tomllib

    path = Path(folder) / "spec.resolved.toml"
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise MlpspecError(f"{path}: cannot read the run's spec: {error}") from None
    flat: dict[str, object] = {}

    def walk(value, prefix):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else key)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                walk(item, f"{prefix}[{i}]")
        else:
            flat[prefix] = value

    walk(table, "")
    return flat


def spec_differences(a: Path, b: Path) -> list[tuple[str, object, object]]:
    """(key, value in a, value in b) for every spec key that differs; absent is None."""
    left, right = flat_spec(a), flat_spec(b)
    keys = sorted(set(left) | set(right))
    return [(k, left.get(k), right.get(k)) for k in keys if left.get(k) != right.get(k)]
