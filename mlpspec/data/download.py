"""Fetch dataset files from mirrors into a verified local cache.

The cache holds *decompressed* payloads at
`data_home()/datasets/<dataset>/<filename>`. A file is only ever moved into
place (atomically, `mlpspec.atomic`) after its size and sha256 matched, so a
file in the cache is either verified or left over from tampering; it is
verified again (size, then sha256) before each use and refetched if wrong.
A download killed midway leaves a temporary named after its process, removed
by the next fetch of the same file.

Mirrors, in the order tried:

1. `MLPSPEC_MIRRORS` (environment), separated by whitespace, ',' or ';'
   (not ':' or `os.pathsep`, which appear inside `file://` and Windows paths);
2. `extra_mirrors` (from the spec);
3. the dataset's defaults from `mlpspec.datasets`.

A mirror is an `http(s)://` or `file://` base URL, or a plain directory path.
Under each one `<filename>.gz` is tried, then `<filename>`; whether a
response is gzip is decided by its magic bytes. Any failure (HTTP error,
connection error, timeout, short transfer, corrupt gzip, wrong size or
checksum) moves on to the next candidate, and when all fail a
`DownloadError` lists every URL tried with its reason, one per line.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from mlpspec import atomic
from mlpspec.data.idx import GZIP_MAGIC, Gunzip
from mlpspec.datasets import BuiltinDataset, RemoteFile, get_builtin
from mlpspec.errors import DataError, DownloadError


class DataHomeError(DataError):
    """The data home cannot hold a dataset (not a folder, unwritable, full)."""


#: Read and hash in chunks of this many bytes.
CHUNK_BYTES = 1 << 20

Log = Callable[[str], None]

_MIRROR_SEPARATORS = re.compile(r"[\s,;]+")

HOME_ENV = "MLPSPEC_HOME"


def data_home() -> Path:
    """Root of mlpspec's cache: `$MLPSPEC_HOME`, else `~/.cache/mlpspec`."""
    return Path(os.environ.get(HOME_ENV) or "~/.cache/mlpspec").expanduser()


def dataset_dir(name: str) -> Path:
    """Directory holding the cached files of dataset `name`."""
    return data_home() / "datasets" / name


def usable_dataset_dir(name: str) -> Path:
    """`dataset_dir(name)`, created if missing; a `DataHomeError` naming the data home if not."""
    folder = dataset_dir(name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DataHomeError(f"{_home()}: {folder} should be the data folder, "
                            f"but it is a file") from None
    except OSError as error:
        raise DataHomeError(f"{_home()}: cannot create the data folder {folder}: "
                            f"{_why(error)}") from None
    return folder


def _home() -> str:
    """The data home as a message names it: where it is and where that came from."""
    if os.environ.get(HOME_ENV):
        return f"{HOME_ENV}={os.environ[HOME_ENV]}"
    return f"data home {data_home()} (set {HOME_ENV} to use another folder)"


def _why(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def env_mirrors() -> list[str]:
    """Mirrors from `$MLPSPEC_MIRRORS`, split on whitespace, ',' and ';'."""
    return [m for m in _MIRROR_SEPARATORS.split(os.environ.get("MLPSPEC_MIRRORS", "")) if m]


def mirror_order(dataset: BuiltinDataset, extra_mirrors: Sequence[str] = ()) -> list[str]:
    """Environment mirrors, then `extra_mirrors`, then the dataset's own; no repeats."""
    return list(dict.fromkeys([*env_mirrors(), *extra_mirrors, *dataset.mirrors]))


def fetch_dataset(
    name: str,
    extra_mirrors: Sequence[str] = (),
    *,
    timeout: float = 30,
    log: Log | None = None,
) -> dict[str, Path]:
    """Make sure every file of built-in dataset `name` is cached and verified.

    Returns role (`train_images`, ...) -> path of the decompressed payload.
    """
    dataset = get_builtin(name)
    mirrors = mirror_order(dataset, extra_mirrors)
    dest_dir = usable_dataset_dir(name)
    return {
        role: fetch_file(remote, mirrors, dest_dir, timeout=timeout, log=log)
        for role, remote in dataset.files.items()
    }


def fetch_file(
    remote: RemoteFile,
    mirrors: Sequence[str],
    dest_dir: Path,
    *,
    timeout: float = 30,
    log: Log | None = None,
) -> Path:
    """Return `dest_dir/remote.filename`, verified, downloading it if needed."""
    dest = Path(dest_dir) / remote.filename
    if _cached_size(dest) is not None:
        problem = verify_file(dest, remote)
        if problem is None:
            return dest
        _discard(dest, problem, log)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataHomeError(f"{_home()}: cannot create the data folder {dest.parent}: "
                            f"{_why(error)}") from None
    failures = []
    for mirror in mirrors:
        for location in _candidates(mirror, remote.filename):
            if isinstance(location, _Failure):
                failures.append(location)
                continue
            if log:
                log(f"fetching {location}")
            try:
                _download(location, remote, dest, timeout=timeout)
            except _Failure as failure:
                failures.append(failure)
                continue
            return dest
    if not failures:
        raise DownloadError(f"{remote.filename}: no mirrors configured")
    lines = "\n".join(f"  {f.location}: {f.reason}" for f in failures)
    raise DownloadError(f"{remote.filename}: every mirror failed:\n{lines}")


def verify_file(path: Path, remote: RemoteFile) -> str | None:
    """Check a cached file's size then sha256; return what is wrong, or None."""
    size = _cached_size(path)
    if size is None:
        return "file is missing"
    if size != remote.size:
        return f"size is {size} bytes, expected {remote.size}"
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
    except OSError as error:
        raise DataHomeError(f"{path}: cannot read the cached file: {_why(error)}") from None
    return _checksum_problem(digest.hexdigest(), remote)


def read_verified(path: Path, remote: RemoteFile, *, log: Log | None = None) -> bytes | None:
    """Read a cached file in one go and verify it in memory.

    Returns its bytes if it matches `remote`; otherwise deletes it (reporting
    through `log`) and returns None, as it does when the file is absent. This
    lets a loader hash and parse a file from a single read.
    """
    size = _cached_size(path)
    if size is None:
        return None
    if size != remote.size:
        _discard(path, f"size is {size} bytes, expected {remote.size}", log)
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DataHomeError(f"{path}: cannot read the cached file: {_why(error)}") from None
    problem = _checksum_problem(hashlib.sha256(data).hexdigest(), remote)
    if problem is not None:
        _discard(path, problem, log)
        return None
    return data


class _Failure(Exception):
    """One candidate location failed; `reason` says why."""

    def __init__(self, location: str | Path, reason: str):
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


def _candidates(mirror: str, filename: str) -> list[str | Path | _Failure]:
    """The locations to try under one mirror: the .gz first, then the raw file."""
    names = (f"{filename}.gz", filename)
    try:
        scheme = urllib.parse.urlsplit(mirror).scheme.lower()
    except ValueError as exc:  # e.g. "http://[::1" (an unclosed IPv6 address)
        return [_Failure(mirror, f"not a valid URL: {exc}")]
    if scheme in ("http", "https", "file"):
        base = mirror if mirror.endswith("/") else mirror + "/"
        return [base + n for n in names]
    if len(scheme) <= 1:  # no scheme, or a Windows drive letter
        directory = Path(mirror).expanduser()
        return [directory / n for n in names]
    return [_Failure(mirror, f"unsupported mirror scheme {scheme!r} (use http, https, file or a directory)")]


def _download(location: str | Path, remote: RemoteFile, dest: Path, *, timeout: float) -> None:
    """Stream `location` into `dest`, decompressing and verifying on the way.

    Writes to a temporary file next to `dest` and moves it into place only
    when size and sha256 match; the temporary file never survives a failure.
    """
    try:
        atomic.tidy(dest.parent, dest.name)  # leftovers of killed downloads
        tmp = atomic.temporary_path(dest)
        out = open(tmp, "xb")
    except OSError as error:
        raise DataHomeError(f"{_home()}: cannot write in the data folder {dest.parent}: "
                            f"{_why(error)}") from None
    try:
        with out, _open(location, timeout) as (stream, declared):
            _copy_verified(stream, out, declared, location, remote, dest)
            _local(out.flush, dest)  # write errors are the data home's, not the mirror's
            _local(lambda: os.fsync(out.fileno()), dest)
        _local(lambda: os.replace(tmp, dest), dest)
    except (_Failure, DataHomeError):
        raise
    except DataError as exc:  # corrupt or oversized gzip stream
        raise _Failure(location, str(exc).removeprefix(f"{location}: ")) from exc
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _Failure(location, f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _Failure(location, _os_reason(exc.reason, timeout)) from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _Failure(location, _os_reason(exc, timeout)) from exc
    finally:
        tmp.unlink(missing_ok=True)  # gone already once replaced; never left behind


def _copy_verified(
    stream: BinaryIO, out: BinaryIO, declared: int | None, location: str | Path,
    remote: RemoteFile, dest: Path,
) -> None:
    digest = hashlib.sha256()
    received = 0
    size = 0
    head = b""
    while len(head) < 2 and (more := stream.read(2 - len(head))):
        head += more
    decoder = Gunzip(name=str(location), limit=remote.size) if head == GZIP_MAGIC else None
    chunk = head
    while chunk:
        received += len(chunk)
        payload = decoder.feed(chunk) if decoder else chunk
        size += len(payload)
        if size > remote.size:
            raise _Failure(location, f"payload exceeds the expected {remote.size} bytes")
        digest.update(payload)
        _local(lambda: out.write(payload), dest)
        chunk = stream.read(CHUNK_BYTES)
    if declared is not None and received != declared:
        raise _Failure(location, f"transfer truncated: received {received} of {declared} bytes")
    if decoder:
        decoder.finish()
    if size != remote.size:
        raise _Failure(location, f"payload is {size} bytes, expected {remote.size}")
    problem = _checksum_problem(digest.hexdigest(), remote)
    if problem is not None:
        raise _Failure(location, problem)


@contextlib.contextmanager
def _open(location: str | Path, timeout: float) -> Iterator[tuple[BinaryIO, int | None]]:
    """Yield (binary stream, declared length in bytes or None) for a location."""
    if isinstance(location, Path):
        with location.open("rb") as stream:
            yield stream, None
        return
    with urllib.request.urlopen(location, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        yield response, int(length) if length and length.isdigit() else None


def _checksum_problem(found: str, remote: RemoteFile) -> str | None:
    if found != remote.sha256:
        return f"sha256 mismatch: expected {remote.sha256}, found {found}"
    return None


def _os_reason(exc: object, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _discard(path: Path, problem: str, log: Log | None) -> None:
    if log:
        log(f"{path}: cached file is corrupt ({problem}); deleting and fetching again")
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise DataHomeError(f"{path}: cached file is corrupt ({problem}) and cannot be "
                            f"deleted: {_why(error)}") from None


def _cached_size(path: Path) -> int | None:
    """Size of a cached file, None if there is none; a DataHomeError if it is not a file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DataHomeError(f"{_home()}: cannot read {path}: {_why(error)}") from None
    if not stat.S_ISREG(info.st_mode):
        found = "a folder" if stat.S_ISDIR(info.st_mode) else "no regular file"
        raise DataHomeError(f"{path}: expected a cached data file, found {found}; "
                            f"remove it and try again")
    return info.st_size


def _local(action: Callable[[], object], dest: Path) -> None:
    """Run a write to the data home; an OSError (a full disk) names the data home and `dest`."""
    try:
        action()
    except OSError as error:
        raise DataHomeError(f"{_home()}: cannot write {dest}: {_why(error)}") from None
