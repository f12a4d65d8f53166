"""Arrays and JSON in a folder: the file layout the types that save themselves share.

    save_arrays(folder, {"W": W})       # folder/W.npy, no pickle
    load_arrays(folder, ("W",))         # {"W": array}
    write_json(folder / "meta.json", value)

JSON has no NaN: non-finite floats are stored as null (NaN means "no
validation set" in the training history; readers turn null back into NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def save_arrays(folder: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """One `<name>.npy` per array under `folder` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        with open(folder / f"{name}.npy", "wb") as stream:
            np.save(_Writes(stream), np.asarray(array), allow_pickle=False)


class _Writes:
    """A stream numpy can only `write` to.

    Given a real file, `np.save` writes through a duplicated C `FILE*` and
    ignores the error of its final flush: a disk that fills up in the last
    few kB leaves a truncated .npy and no exception, and a cache would store
    it as complete. Through `write`, Python raises the error.
    """

    def __init__(self, stream):
        self.write = stream.write


def load_arrays(folder: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in names}


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(jsonable(value), indent=1))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def jsonable(value: Any) -> Any:
    """NaN and infinities become null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
