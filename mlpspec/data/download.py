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

#: Read and hash in chunks of this many bytes.
CHUNK_BYTES = 1 << 20

Log = Callable[[str], None]

_MIRROR_SEPARATORS = re.compile(r"[\s,;]+")


def data_home() -> Path:
    """Root of mlpspec's cache: `$MLPSPEC_HOME`, else `~/.cache/mlpspec`."""
    return Path(os.environ.get("MLPSPEC_HOME") or "~/.cache/mlpspec").expanduser()


def dataset_dir(name: str) -> Path:
    """Directory holding the cached files of dataset `name`."""
    return data_home() / "datasets" / name


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
    dest_dir = dataset_dir(name)
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
    if dest.exists():
        problem = verify_file(dest, remote)
        if problem is None:
            return dest
        _discard(dest, problem, log)
    dest.parent.mkdir(parents=True, exist_ok=True)
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
    size = path.stat().st_size
    if size != remote.size:
        return f"size is {size} bytes, expected {remote.size}"
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return _checksum_problem(digest.hexdigest(), remote)


def read_verified(path: Path, remote: RemoteFile, *, log: Log | None = None) -> bytes | None:
    """Read a cached file in one go and verify it in memory.

    Returns its bytes if it matches `remote`; otherwise deletes it (reporting
    through `log`) and returns None, as it does when the file is absent. This
    lets a loader hash and parse a file from a single read.
    """
    try:
        if path.stat().st_size != remote.size:
            _discard(path, f"size is {path.stat().st_size} bytes, expected {remote.size}", log)
            return None
        data = path.read_bytes()
    except FileNotFoundError:
        return None
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
    scheme = urllib.parse.urlsplit(mirror).scheme.lower()
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
        with atomic.writing(dest) as out, _open(location, timeout) as (stream, declared):
            _copy_verified(stream, out, declared, location, remote)
    except _Failure:
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


def _copy_verified(
    stream: BinaryIO, out: BinaryIO, declared: int | None, location: str | Path, remote: RemoteFile
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
        out.write(payload)
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
    path.unlink(missing_ok=True)
