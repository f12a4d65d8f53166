"""Atomic writes, and the temporaries a killed writer leaves behind.

    write_bytes(path, data)              # the old file or the new one, never half
    with writing(path) as stream: ...    # the same, streamed
    with staging_folder(target) as folder: ...; swap_in(folder, target)
    tidy(folder)                         # remove what killed writers left there

A file or folder is written under a temporary name in the same folder and
renamed into place once complete (`os.replace` is atomic within a file
system). A folder cannot replace a non-empty folder in one rename, so
`swap_in` sets the old one aside, renames the new one in, then deletes the
old one.

A process killed mid-write (kill -9, power loss) cannot clean up, so every
temporary is named after its owner:

    .<target>.tmp-<host>-<pid>-<token>    something being written
    .<target>.old-<host>-<pid>-<token>    the previous version, set aside by swap_in

A temporary is stale when its owner is gone: same host, and no process with
that pid is alive. `tidy` removes stale temporaries, except that a stale `old`
whose target is missing (killed between swap_in's two renames) is renamed back
to the target: the previous version is restored instead of lost. Temporaries
of live processes, and of other hosts (whose processes this one cannot see),
are left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<kind>tmp|old)-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)"
                   r"-(?P<token>[0-9a-f]+)$")


def _host() -> str:
    """This machine's name, reduced to the characters a temporary's name allows."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:64] or "host"


def temporary_path(target: Path, kind: str = "tmp") -> Path:
    """A fresh name beside `target` for a temporary owned by this process."""
    if kind not in ("tmp", "old"):
        raise ValueError(f"kind must be 'tmp' or 'old', got {kind!r}")
    target = Path(target)
    return target.with_name(f".{target.name}.{kind}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no safe liveness probe here: never delete what might be in use
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def is_stale(path: Path) -> bool | None:
    """True for a temporary whose owner is gone, False for a live one, None for other names."""
    match = _NAME.match(Path(path).name)
    if match is None:
        return None
    return match["host"] == _host() and not _pid_alive(int(match["pid"]))


def stale(folder: Path, target: str | None = None) -> list[Path]:
    """The stale temporaries in `folder` (only those of `target`, when given)."""
    found = []
    try:
        children = sorted(Path(folder).iterdir())
    except OSError:
        return found
    for path in children:
        match = _NAME.match(path.name)
        if match and (target is None or match["target"] == target) and is_stale(path):
            found.append(path)
    return found


def size_of(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    try:
        if path.is_symlink() or path.is_file():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    except OSError:
        return 0


def tidy(folder: Path, target: str | None = None) -> tuple[int, int]:
    """Clean up after killed writers in `folder`; `(count, bytes)` of what was removed.

    Restores a set-aside previous version whose target is missing; removes
    every other stale temporary (of `target` only, when given).
    """
    count = freed = 0
    for path in stale(folder, target):
        match = _NAME.match(path.name)
        original = path.with_name(match["target"])
        if match["kind"] == "old" and not original.exists():
            with contextlib.suppress(OSError):
                os.rename(path, original)
            continue  # restored, or left for the next attempt: never lose the only copy
        size = size_of(path)
        remove(path)
        if not path.exists():
            count, freed = count + 1, freed + size
    return count, freed


def remove(path: Path) -> None:
    """Delete a file or a folder tree, ignoring what is already gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces `path` atomically when the block ends.

    If the block raises, the temporary file is deleted and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tidy(path.parent, path.name)
    temporary = temporary_path(path)
    # O_EXCL: the name is ours alone; 0o666 & umask: the permissions of any new file.
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; return the path."""
    with writing(path) as stream:
        stream.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; return the path."""
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """A fresh empty folder beside `target`, removed when the block ends unless moved away.

    Fill it, then `swap_in(folder, target)` inside the block. Stale staging
    folders of `target` from killed runs are tidied first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tidy(target.parent, target.name)
    folder = temporary_path(target)
    folder.mkdir()
    try:
        yield folder
    finally:
        if folder.exists():
            remove(folder)


def swap_in(staging: Path, target: Path) -> None:
    """Replace folder `target` with the complete folder `staging`.

    The old folder is set aside, the new one renamed in, then the old one
    deleted; a failed rename puts the old one back. A kill between the two
    renames leaves the old folder set aside, which `tidy` restores.
    """
    old = None
    if target.exists():
        old = temporary_path(target, "old")
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    _sync_folder(target.parent)
    if old is not None:
        remove(old)


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); best effort elsewhere."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
