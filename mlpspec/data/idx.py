"""The IDX file format (MNIST's), plain or gzip-compressed.

Layout of an IDX payload, every number big-endian:

    offset  size     field
    0       2        zero bytes 00 00
    2       1        dtype code (see `DTYPE_CODES`)
    3       1        ndim, 1..MAX_NDIM
    4       4*ndim   dims, each a uint32
    4+4*ndim         prod(dims) * itemsize bytes of data, C order, nothing after

A file on disk may hold that payload as is or gzip-compressed; which one is
decided by the gzip magic bytes 1f 8b, never by the file name.

The reader never trusts the header to size an allocation: it computes the
declared payload size with Python integers and compares it with the bytes
actually present before touching numpy. A gzip file is inflated as a stream:
its header, inflated first, caps the rest, so a small file that inflates to
far more than its header declares (a gzip bomb) is refused after at most the
declared size, never inflated whole.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np

from mlpspec.errors import DataError

#: IDX dtype code -> big-endian numpy dtype.
DTYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Largest ndim accepted; real IDX files use 1 to 4.
MAX_NDIM = 8

GZIP_MAGIC = b"\x1f\x8b"

#: Largest payload (header included) read from a gzip-compressed IDX file.
#: MNIST's largest is 47 MB; EMNIST's 0.55 GB.
MAX_GZIP_PAYLOAD = 1 << 32

#: Compressed bytes inflated per step. DEFLATE expands at most about 1032:1,
#: so one step adds at most ~4 MB beyond what the header declared.
_STEP = 1 << 12


def read_idx(data: bytes | bytearray | memoryview, *, name: str, copy: bool = True) -> np.ndarray:
    """Parse an uncompressed IDX payload into a native-endian array.

    `name` is used in error messages (usually the file name). Returns an array
    of shape `dims` (for MNIST images `(n_images, 28, 28)`), always a fresh,
    writable copy that does not keep `data` alive; with `copy=False` and a
    writable `data` the caller gives up (a bytearray), it may be a view of it.
    """
    view = memoryview(data).cast("B")
    dtype, dims, offset = _parse_header(view, name=name)
    expected = _product(dims) * dtype.itemsize
    found = len(view) - offset
    if found != expected:
        declared = f"header declares {_describe(dims, dtype)} ({expected} bytes)"
        if found < expected:
            raise DataError(f"{name}: {declared} but only {found} bytes follow")
        raise DataError(
            f"{name}: {declared} but {found} bytes follow "
            f"({found - expected} trailing bytes)"
        )
    array = np.frombuffer(view, dtype=dtype, count=_product(dims), offset=offset)
    return array.reshape(dims).astype(dtype.newbyteorder("="), copy=copy or view.readonly)


def read_idx_file(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw; see `read_idx`."""
    array, _ = read_idx_file_with_sha256(path)
    return array


def read_idx_file_with_sha256(path: str | Path) -> tuple[np.ndarray, str]:
    """Read an IDX file and return it with the sha256 of its decompressed payload."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read IDX file: {exc.strerror or exc}") from exc
    return read_idx_bytes(raw, name=str(path))


def read_idx_bytes(data: bytes | memoryview, *, name: str) -> tuple[np.ndarray, str]:
    """Parse an IDX file's bytes, gzip-compressed or raw; see `read_idx`.

    Returns the array and the sha256 of the (decompressed) payload. A gzip
    stream is inflated step by step and checked against its header as it
    goes: more than `MAX_GZIP_PAYLOAD` declared, or more bytes than declared,
    is a DataError before the excess is inflated.
    """
    if bytes(data[:2]) != GZIP_MAGIC:
        return read_idx(data, name=name), hashlib.sha256(data).hexdigest()
    view = memoryview(data).cast("B")
    decoder = Gunzip(name=name)
    payload = bytearray()
    position = 0
    # Until the header is complete, inflate 64 compressed bytes at a time
    # (at most ~64 KB out); the header then caps the stream.
    while decoder.limit is None and position < len(view):
        payload += decoder.feed(view[position:position + 64])
        position += 64
        if len(payload) >= 4:
            decoder.limit = _declared_total(payload, name)
    while position < len(view) and decoder.size <= decoder.limit:
        try:
            payload += decoder.feed(view[position:position + _STEP])
        except DataError:
            if decoder.size <= decoder.limit:
                raise  # corrupt, not too long
        position += _STEP
    if decoder.limit is not None and decoder.size > decoder.limit:
        dtype, dims, offset = _parse_header(bytes(payload[:4 + 4 * MAX_NDIM]), name=name)
        raise DataError(f"{name}: header declares {_describe(dims, dtype)} "
                        f"({decoder.limit - offset} bytes) but the gzip stream holds more")
    decoder.finish()
    return read_idx(payload, name=name, copy=False), hashlib.sha256(payload).hexdigest()


def _declared_total(head: bytearray, name: str) -> int | None:
    """Header plus data bytes a payload starting with `head` declares; None if `head` is short."""
    ndim = head[3]
    if len(head) < 4 + 4 * ndim and 1 <= ndim <= MAX_NDIM:
        return None  # the dims are still to come
    dtype, dims, offset = _parse_header(bytes(head[:4 + 4 * MAX_NDIM]), name=name)
    total = offset + _product(dims) * dtype.itemsize
    if total > MAX_GZIP_PAYLOAD:
        raise DataError(f"{name}: header declares {_describe(dims, dtype)} "
                        f"({total - offset} bytes), more than the {MAX_GZIP_PAYLOAD} bytes "
                        f"mlpspec reads from a gzip-compressed IDX file")
    return total


def encode_idx(array: np.ndarray) -> bytes:
    """Serialize `array` as an uncompressed IDX payload (the inverse of `read_idx`).

    Used to build test fixtures and small datasets; the dtype must be one of
    `DTYPE_CODES` and `array.ndim` in 1..MAX_NDIM.
    """
    array = np.asarray(array)
    for code, dtype in DTYPE_CODES.items():
        if array.dtype.newbyteorder(">") == dtype or array.dtype == dtype:
            break
    else:
        raise ValueError(f"IDX has no dtype code for {array.dtype}")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise ValueError(f"IDX needs 1..{MAX_NDIM} dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def gunzip(data: bytes | memoryview, *, name: str, limit: int | None = None) -> bytes:
    """Decompress a whole gzip stream; corrupt or truncated input is a DataError."""
    decoder = Gunzip(name=name, limit=limit)
    out = decoder.feed(data)
    decoder.finish()
    return out


class Gunzip:
    """Incremental gzip decoder: multi-member, optional output cap.

    `feed(chunk)` returns the decompressed bytes available so far; `finish()`
    raises if the stream stopped mid-member. Anything wrong with the stream
    (bad header, CRC mismatch, garbage after it, more than `limit` output
    bytes) is a DataError naming `name`. The cap is enforced while inflating,
    so a small hostile stream cannot balloon in memory.
    """

    def __init__(self, *, name: str, limit: int | None = None):
        self.name = name
        self.limit = limit
        self.size = 0
        self._decoder = zlib.decompressobj(wbits=31)
        self._started = False

    def feed(self, chunk: bytes | memoryview) -> bytes:
        pieces = []
        data = bytes(chunk)
        while data:
            if self._decoder.eof:
                # Another gzip member follows; tolerate zero padding at the end.
                if not data.strip(b"\0"):
                    break
                if data[:2] != GZIP_MAGIC[: len(data)]:
                    raise DataError(f"{self.name}: unexpected data after the gzip stream")
                self._decoder = zlib.decompressobj(wbits=31)
            room = 0 if self.limit is None else self.limit - self.size + 1
            try:
                piece = self._decoder.decompress(data, room)
            except zlib.error as exc:
                raise DataError(f"{self.name}: corrupt gzip stream ({exc})") from exc
            self._started = True
            self.size += len(piece)
            if self.limit is not None and self.size > self.limit:
                raise DataError(
                    f"{self.name}: gzip stream decompresses to more than "
                    f"the expected {self.limit} bytes"
                )
            pieces.append(piece)
            data = self._decoder.unused_data if self._decoder.eof else self._decoder.unconsumed_tail
        return b"".join(pieces)

    def finish(self) -> None:
        if not (self._started and self._decoder.eof):
            raise DataError(f"{self.name}: gzip stream is truncated")


def _parse_header(view: memoryview, *, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (big-endian dtype, dims, payload offset) from an IDX header."""
    if len(view) < 4:
        raise DataError(f"{name}: expected an IDX header of at least 4 bytes, found {len(view)}")
    if view[0] != 0 or view[1] != 0:
        raise DataError(
            f"{name}: not an IDX file: expected magic 00 00, found {view[0]:02x} {view[1]:02x}"
        )
    code, ndim = view[2], view[3]
    if code not in DTYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPE_CODES)
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions, expected 1..{MAX_NDIM}")
    offset = 4 + 4 * ndim
    if len(view) < offset:
        raise DataError(
            f"{name}: IDX header declares {ndim} dimensions ({offset} header bytes) "
            f"but the file has only {len(view)} bytes"
        )
    dims = tuple(int.from_bytes(view[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return DTYPE_CODES[code], dims, offset


def _product(dims: tuple[int, ...]) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


def _describe(dims: tuple[int, ...], dtype: np.dtype) -> str:
    return f"{'x'.join(str(d) for d in dims)} {dtype.newbyteorder('=').name}"
