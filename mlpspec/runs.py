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
