"""Standalone inference for mlpspec model files (format "mlpspec-model" 1.x).

    import infer
    model = infer.load("mnist.mlpm")
    model.predict(images)          # raw samples (n, 28, 28) -> class indices (n,)
    model.predict_proba(images)    # raw samples -> probabilities (n, classes)
    model.predict(rows)            # a regression model (format 1.2): values (n, targets)
    model.predict_prepared(model.preprocess(images))   # already prepared (n, 784)

Samples are always raw, as the training data source gave them (uint8 pixels,
CSV numbers), and the model applies its own stored preprocessing. Input that
cannot be what the model was trained on (wrong shape, not numbers, NaN, or
(format 1.1) values outside the stored input contract, such as pixels already
scaled to [0, 1]) raises `InputError` instead of giving a plausible wrong answer.

This module imports only numpy, msgpack and the standard library, never the
rest of mlpspec: copy this one file into another project and it works as is.
The file format is specified in mlpspec's `docs/model-format.md`; in short a
model file is one msgpack map holding the architecture, every tensor as
dtype + shape + little-endian C-order bytes, the preprocessing, class names,
metrics, provenance and a CRC-32 over everything before the checksum entry.

Reading is defensive: the file size, every length, the nesting depth and each
tensor's byte count are checked before anything is allocated, no code is
ever executed, and every problem raises `ModelFormatError` naming the field
(`tensors["layers.0.W"].shape: expected [784, 16], found [784, 17]`).

The forward pass repeats the trainer's operations in the same order and the
same dtype, so outputs equal `mlpspec`'s `Network.predict` (bit for bit in
practice; the tests require 1e-6 relative).
"""

from __future__ import annotations

import math
import mmap
import os
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, NoReturn

import msgpack
import numpy as np

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "InputError", "Model", "ModelFormatError", "encode", "load"]

FORMAT_NAME = "mlpspec-model"
#: (major, minor) written by this module; any 1.x file is read. 1.1 added
#: `preprocessing.input`, the raw training inputs the model checks samples against;
#: 1.2 added `task` and `targets` (regression models) and `preprocessing.columns`,
#: the column handling of tabular (CSV) models.
FORMAT_VERSION = (1, 2)

# Hard limits, checked before allocating. A legitimate model is far below all of them.
MAX_FILE_BYTES = 1 << 30          # 1 GiB
MAX_TENSOR_ELEMENTS = 1 << 28     # 268M values (1 GiB of float32)
MAX_NDIM = 4
MAX_DIM = 1 << 31
MAX_DEPTH = 32                    # nesting of maps and lists (metrics are the deepest)
MAX_STR_LEN = 16 << 20            # the resolved spec text is the longest string
MAX_ARRAY_LEN = 1 << 21           # class names: up to 2M classes
MAX_MAP_LEN = 1 << 16
MAX_LAYERS = 10_000

#: The checksum is the map's last entry: key "checksum", value "crc32:" + 8 hex digits.
_CHECKSUM_KEY = msgpack.packb("checksum")
_CHECKSUM_PREFIX = "crc32:"
_TRAILER_LEN = len(_CHECKSUM_KEY) + len(msgpack.packb(_CHECKSUM_PREFIX + "0" * 8))

_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}


class ModelFormatError(ValueError):
    """A model file is damaged, hostile or of an unsupported version.

    `field` is the path of the offending field (`tensors["layers.0.W"].shape`,
    empty for the whole file) and `problem` what was expected and found.
    """

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}" if field else problem)


class InputError(ValueError):
    """Samples given to `Model.predict` etc. do not fit the model.

    Raised for the wrong shape, a non-numeric dtype, NaN or infinity, and
    (files of format 1.1 and later) values that cannot be the raw inputs the
    model was trained on; the message says what was expected and what was found.
    """


# ---------------------------------------------------------------- encoding


def tensor_entry(array: np.ndarray) -> dict[str, Any]:
    """`{"dtype", "shape", "data"}` for a float32/float64 array: little-endian, C order."""
    array = np.asarray(array)
    name = array.dtype.name
    if name not in _DTYPES:
        raise TypeError(f"tensors must be float32 or float64, got {array.dtype}")
    data = np.ascontiguousarray(array, dtype=_DTYPES[name]).tobytes()
    return {"dtype": name, "shape": list(array.shape), "data": data}


def encode(document: Mapping[str, Any]) -> bytes:
    """The model file bytes for `document` (a map without "checksum"), checksum appended.

    Deterministic: maps are written in their insertion order, integers in
    their shortest form, floats as float64, strings as UTF-8 str, bytes as bin.
    """
    if "checksum" in document:
        raise ValueError("the document must not hold a 'checksum' entry; encode adds it")
    # Pack with a placeholder of the final length, so the map header already counts
    # the checksum entry; then replace the placeholder by the real value.
    packed = msgpack.packb({**document, "checksum": _CHECKSUM_PREFIX + "0" * 8},
                           use_bin_type=True, use_single_float=False)
    body = memoryview(packed)[:-_TRAILER_LEN]
    return bytes(body) + _checksum_trailer(zlib.crc32(body))


def _checksum_trailer(crc: int) -> bytes:
    return _CHECKSUM_KEY + msgpack.packb(f"{_CHECKSUM_PREFIX}{crc:08x}")


# ---------------------------------------------------------------- decoding


def load(source: str | os.PathLike | bytes | bytearray | memoryview, *,
         max_bytes: int = MAX_FILE_BYTES) -> Model:
    """Read a model from a path or from the file's bytes; raise `ModelFormatError`.

    Files larger than `max_bytes` are refused before being read. OSError
    (missing or unreadable file) propagates unchanged.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ModelFormatError("", f"the data is {len(data)} bytes, more than the limit of {max_bytes}")
        return Model(_decode(data))
    with open(source, "rb", buffering=0) as stream:
        info = os.fstat(stream.fileno())
        if info.st_size > max_bytes:
            raise ModelFormatError("", f"the file is {info.st_size} bytes, more than the limit of {max_bytes}")
        if info.st_size and stat.S_ISREG(info.st_mode) and hasattr(mmap, "MAP_POPULATE"):
            # Parsing straight from the page cache, mapped in one go, saves copying the
            # file into fresh memory: page faults were most of the load time. (Like any
            # mapping, truncating the file in place during these milliseconds would
            # raise SIGBUS; mlpspec replaces model files atomically, never in place.)
            with mmap.mmap(stream.fileno(), info.st_size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                           prot=mmap.PROT_READ) as mapped:
                return Model(_decode(mapped))
        data = stream.read(info.st_size)
        while len(data) <= max_bytes and (more := stream.read(min(1 << 20, max_bytes + 1 - len(data)))):
            data += more  # stat reported no size (a pipe)
    if len(data) > max_bytes:
        raise ModelFormatError("", f"the file is more than the limit of {max_bytes} bytes")
    return Model(_decode(data))


def _decode(data: bytes | mmap.mmap) -> dict[str, Any]:
    """Parse, check format name and version, verify the checksum; return the document."""
    if not data:
        raise ModelFormatError("", "the file is empty")
    first = data[0]
    if not (0x80 <= first <= 0x8F or first in (0xDE, 0xDF)):
        raise ModelFormatError("", f"not an mlpspec model file: expected a msgpack map, "
                                   f"found first byte 0x{first:02x}")
    size = len(data)
    try:
        document = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, timestamp=0,
            object_pairs_hook=_unique_keys, ext_hook=_no_ext,
            max_str_len=min(size, MAX_STR_LEN), max_bin_len=size,
            max_array_len=min(size, MAX_ARRAY_LEN), max_map_len=min(size, MAX_MAP_LEN),
            max_ext_len=min(size, 1 << 20))
    except ModelFormatError:
        raise
    except msgpack.ExtraData:
        raise ModelFormatError("", "unexpected bytes after the end of the model map") from None
    except msgpack.StackError:
        raise ModelFormatError("", "maps and lists are nested too deeply") from None
    except UnicodeDecodeError as error:
        raise ModelFormatError("", f"a string is not valid UTF-8 ({error.reason})") from None
    except RecursionError:
        raise ModelFormatError("", "maps and lists are nested too deeply") from None
    except Exception as error:  # msgpack reports damage as ValueError, FormatError, ...
        message = str(error) or type(error).__name__
        if "incomplete input" in message:
            message = f"the file is truncated: the msgpack data ends early ({size} bytes)"
        raise ModelFormatError("", f"not a valid msgpack document: {message}") from None
    if not isinstance(document, dict):
        raise ModelFormatError("", f"expected a msgpack map, found {_kind(document)}")
    _check_tree(document, "", 0)
    _check_format(document)
    _check_checksum(document, data)
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ModelFormatError("", f"the key {key!r} appears twice in one map")
            seen.add(key)
    return out


def _no_ext(code: int, data: bytes) -> None:
    raise ModelFormatError("", f"msgpack extension types are not allowed (found type {code})")


_PLAIN = (str, int, float, bool, bytes, type(None))


def _check_tree(value: Any, path: str, depth: int) -> None:
    """Every value is a plain msgpack type, nested at most MAX_DEPTH deep."""
    if depth > MAX_DEPTH:
        raise ModelFormatError(path, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ModelFormatError(path, f"map keys must be strings, found {_kind(key)}")
            if not isinstance(item, _PLAIN):
                _check_tree(item, _join(path, key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, _PLAIN):
                _check_tree(item, f"{path}[{index}]", depth + 1)
    elif not isinstance(value, _PLAIN):
        raise ModelFormatError(path, f"unsupported msgpack value {_kind(value)}")


def _check_format(document: dict) -> None:
    name = document.get("format")
    if name != FORMAT_NAME:
        found = repr(name) if isinstance(name, str) else _kind(name)
        raise ModelFormatError("format", f"not an mlpspec model file: expected {FORMAT_NAME!r}, "
                                         f"found {found}")
    version = document.get("format_version")
    # Any non-negative minor: a newer minor only adds fields this reader may ignore.
    if (not isinstance(version, list) or len(version) != 2
            or not all(type(v) is int and v >= 0 for v in version)):
        raise ModelFormatError("format_version", f"expected [major, minor] (two integers), "
                                                 f"found {_show(version)}")
    major, minor = version
    ours = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
    if major > FORMAT_VERSION[0]:
        raise ModelFormatError("format_version", f"the file has format version {major}.{minor}, "
                                                 f"newer than this reader's {ours}; read it with a "
                                                 f"newer mlpspec (or its infer.py)")
    if major < FORMAT_VERSION[0]:
        raise ModelFormatError("format_version", f"format version {major}.{minor} was never released; "
                                                 f"this reader reads {FORMAT_VERSION[0]}.x")


def _check_checksum(document: dict, data: bytes) -> None:
    stored = document.get("checksum")
    if not (isinstance(stored, str) and len(stored) == 14 and stored.startswith(_CHECKSUM_PREFIX)
            and all(c in "0123456789abcdef" for c in stored[6:])):
        raise ModelFormatError("checksum", f"expected 'crc32:' and 8 lowercase hex digits, "
                                           f"found {_show(stored)}")
    if data[-_TRAILER_LEN:] != _CHECKSUM_KEY + msgpack.packb(stored):
        raise ModelFormatError("checksum", "must be the last entry of the map")
    with memoryview(data) as view, view[:-_TRAILER_LEN] as body:
        computed = zlib.crc32(body)
    if computed != int(stored[6:], 16):
        raise ModelFormatError("checksum", f"mismatch: the file is corrupted (stored {stored}, "
                                           f"computed {_CHECKSUM_PREFIX}{computed:08x})")


# ---------------------------------------------------------------- field checks


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             bytes: "bytes", list: "a list", dict: "a map", type(None): "nil"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if isinstance(value, (int, float, bool)) or value is None:
        return f"{_kind(value)} {value!r}"
    if isinstance(value, str) and len(value) <= 60:
        return f"a string {value!r}"
    if isinstance(value, list) and len(value) <= 8 and all(isinstance(v, (int, float)) for v in value):
        return f"a list {value!r}"
    return _kind(value)


def _join(path: str, key: str) -> str:
    if path.endswith("tensors") or not key.isidentifier():
        return f'{path}["{key}"]' if len(key) <= 80 else f"{path}[<key of {len(key)} characters>]"
    return f"{path}.{key}" if path else key


def _field(table: dict, key: str, path: str, kind: type | tuple[type, ...], required: bool = True,
           default: Any = None) -> Any:
    where = _join(path, key)
    if key not in table:
        if required:
            raise ModelFormatError(where, "missing")
        return default
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        expected = " or ".join(_kind(k()) if k is not type(None) else "nil" for k in _as_tuple(kind))
        raise ModelFormatError(where, f"expected {expected}, found {_show(value)}")
    return value


def _unique(names: list[str], where: str) -> None:
    """Each name once: `where[i]` names the first repeat."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ModelFormatError(f"{where}[{i}]", f"expected each name once, found {_show(name)} again")
        seen.add(name)


def _as_tuple(kind) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _count(table: dict, key: str, path: str, low: int = 0, high: int = MAX_DIM) -> int:
    value = _field(table, key, path, int)
    if not low <= value <= high:
        raise ModelFormatError(_join(path, key), f"expected an integer in [{low}, {high}], found {value}")
    return value


def _number(table: dict, key: str, path: str) -> float:
    value = _field(table, key, path, (int, float))
    if not math.isfinite(value):
        raise ModelFormatError(_join(path, key), f"expected a finite number, found {value!r}")
    return float(value)


def _tensor(entry: Any, path: str, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Decode one `{"dtype", "shape", "data"}` entry, checking sizes before touching numpy."""
    if not isinstance(entry, dict):
        raise ModelFormatError(path, f"expected a map with dtype, shape and data, found {_kind(entry)}")
    dtype_name = _field(entry, "dtype", path, str)
    if dtype_name not in _DTYPES:
        raise ModelFormatError(f"{path}.dtype", f"expected one of {', '.join(_DTYPES)}, "
                                                f"found {_show(dtype_name)}")
    shape = _field(entry, "shape", path, list)
    if len(shape) > MAX_NDIM or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape):
        raise ModelFormatError(f"{path}.shape", f"expected at most {MAX_NDIM} non-negative integers, "
                                                f"found {_show(shape)}")
    if expected_shape is not None and tuple(shape) != expected_shape:
        raise ModelFormatError(f"{path}.shape", f"expected {list(expected_shape)}, found {shape}")
    elements = math.prod(shape)
    if elements > MAX_TENSOR_ELEMENTS:
        raise ModelFormatError(f"{path}.shape", f"{shape} has {elements} elements, more than the "
                                                f"limit of {MAX_TENSOR_ELEMENTS}")
    data = _field(entry, "data", path, bytes)
    dtype = _DTYPES[dtype_name]
    if len(data) != elements * dtype.itemsize:
        raise ModelFormatError(f"{path}.data", f"expected {elements * dtype.itemsize} bytes for "
                                               f"{dtype_name} {shape}, found {len(data)}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if sys.byteorder != "little":
        array = array.astype(dtype.newbyteorder("="))
    return array


# ---------------------------------------------------------------- layers


def _softmax(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of `Z` `(n, outputs)`, in place: the trainer's `probabilities`.

    The same operations on the same values; for one row the reductions run over
    the whole array (the same sums, without the per-axis machinery: ~1 us of
    the ~4.5 us a batch-1 softmax took).
    """
    if len(Z) == 1:
        Z -= Z.max()
        np.exp(Z, out=Z)
        Z /= Z.sum()
        return Z
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715

Op = Callable[[np.ndarray], np.ndarray]


# For a few samples the product is a matrix-vector one per sample, bound by reading W.
# Measured on the 2-core EPYC (784x1024 float32, one sample, median): x @ W as
# np.vecmat or np.matmul 37-38 us, np.matvec(W.T, x) on a C-contiguous W.T 23-24 us
# (each output is one contiguous dot product; 2 samples 46 vs 75 us, 4: 90 vs 139 us).
# So for a large W the small path keeps W.T, made on the first small call (not at
# load: copying W takes milliseconds), and uses np.matvec. The two sum in different
# orders, so their outputs may differ in the last bits (relative ~1e-6 in float32);
# small layers, where nothing is gained, keep np.vecmat. np.matvec needs NumPy >= 2.2.
SMALL_BATCH = 4
CHECK_BLOCK = 1 << 16  # values per block of the input test `Model._accepts` (256 KiB of float32)
MATVEC_MIN_SIZE = 1 << 16  # elements of W from which W.T @ x pays
_vecmat = getattr(np, "vecmat", np.matmul)
_matvec = getattr(np, "matvec", None)


# Outputs of the batch path's hidden dense layers go to buffers kept between calls
# (per thread, so concurrent calls never share one): glibc serves each allocation
# above 32 MiB with fresh pages, faulted in and zeroed on first write, and the
# 10000 x 1024 float32 product (41 MB) took 174 ms that way against 168 ms written
# into a kept buffer. Buffers above KEEP_MAX_BYTES are not kept (a one-off huge
# batch should not pin its memory); the last dense layer's output, which reaches
# the caller, is always a new array.
KEEP_MAX_BYTES = 64 << 20


class _Buffers(threading.local):
    """This thread's kept output buffers, by layer position."""

    def __init__(self) -> None:
        self.kept: dict[int, np.ndarray] = {}

    def get(self, key: int, rows: int, columns: int, dtype: np.dtype) -> np.ndarray:
        """An uninitialised `(rows, columns)` array: a view of the kept buffer when it fits."""
        if rows * columns * dtype.itemsize > KEEP_MAX_BYTES:
            return np.empty((rows, columns), dtype)
        buffer = self.kept.get(key)
        if buffer is None or len(buffer) < rows:
            buffer = self.kept[key] = np.empty((rows, columns), dtype)
        return buffer[:rows]


def _dense_op(W: np.ndarray, b: np.ndarray, small: bool,
              kept: tuple[_Buffers, int] | None = None) -> Op:
    """`X @ W + b`; `kept`: (buffers, key) for a hidden layer of the batch path (see above)."""
    if kept is not None:
        buffers, key = kept

        def dense_kept(X):
            Y = np.matmul(X, W, out=buffers.get(key, len(X), W.shape[1], W.dtype))
            Y += b
            return Y
        return dense_kept
    if small and (_matvec is None or W.size < MATVEC_MIN_SIZE):
        def dense_vecmat(X):
            Y = _vecmat(X, W)
            Y += b
            return Y
        return dense_vecmat
    if not small:
        def dense(X):
            Y = np.matmul(X, W)
            Y += b
            return Y
        return dense

    transposed: list[np.ndarray] = []  # W.T, C-contiguous, once needed

    def dense_small(X):
        if not transposed:
            transposed.append(np.ascontiguousarray(W.T))
        Y = _matvec(transposed[0], X)  # (n, units): row i is W.T @ X[i]
        Y += b
        return Y
    return dense_small


def _relu_op(in_place: bool) -> Op:
    if in_place:
        return lambda X: np.maximum(X, 0, out=X)
    return lambda X: np.maximum(X, 0)


def _leaky_relu_op(alpha: float, in_place: bool) -> Op:
    # The trainer's Y = alpha * X, then X where X > 0 (so NaN stays NaN).
    if in_place:
        return lambda X: np.multiply(X, alpha, out=X, where=~(X > 0))

    def leaky_relu(X):
        Y = np.multiply(X, alpha)
        np.copyto(Y, X, where=X > 0)
        return Y
    return leaky_relu


def _sigmoid_op(in_place: bool) -> Op:
    def sigmoid(X):
        Y = np.multiply(X, 0.5, out=X if in_place else None)
        np.tanh(Y, out=Y)
        Y += 1.0
        Y *= 0.5
        return Y
    return sigmoid


def _tanh_op(in_place: bool) -> Op:
    return (lambda X: np.tanh(X, out=X)) if in_place else np.tanh


def _gelu_op(in_place: bool) -> Op:
    def gelu(X):
        # Same operations and rounding as the trainer's gelu.v1 (tanh approximation):
        # Y = (0.5 X) (1 + tanh((C X) (1 + A X^2)))
        t = X * X
        t *= _GELU_A
        t += 1.0
        t *= _GELU_C * X
        np.tanh(t, out=t)
        t += 1.0
        Y = np.multiply(X, 0.5, out=X if in_place else None)
        Y *= t
        return Y
    return gelu


def _batchnorm_op(scale: np.ndarray, shift: np.ndarray, in_place: bool) -> Op:
    def batchnorm(X):
        Y = np.multiply(X, scale, out=X if in_place else None)
        Y += shift
        return Y
    return batchnorm


# Each layer type's entry in LAYER_OPS: what it reads from the file and the ops it runs.
# `build(settings, arrays, where, in_place)` returns `(op, small_op)`: the op for large
# batches and the one for at most SMALL_BATCH samples (they differ only for dense), or
# None for a layer that is the identity at inference. `where` names the settings for
# errors; `in_place` says whether the incoming array is ours to overwrite.
Ops = tuple[Op, Op]


def _dense(settings: dict, arrays: dict[str, np.ndarray], where: str, in_place: bool) -> Ops:
    W, b = arrays["W"], arrays["b"]
    return _dense_op(W, b, small=False), _dense_op(W, b, small=True)


def _dense_layout(settings: dict, n: int, where: str) -> tuple[dict[str, tuple[int, ...]], int]:
    units = _count(settings, "units", where, 1)
    return {"W": (n, units), "b": (units,)}, units


def _batchnorm(settings: dict, arrays: dict[str, np.ndarray], where: str, in_place: bool) -> Ops:
    epsilon = _number(settings, "epsilon", where)
    if not epsilon > 0:
        raise ModelFormatError(f"{where}.epsilon", f"expected a positive number, found {epsilon}")
    # The trainer's inference statistics, computed the same way in the same dtype.
    scale = arrays["gamma"] / np.sqrt(arrays["running_var"] + epsilon)
    shift = arrays["beta"] - arrays["running_mean"] * scale
    op = _batchnorm_op(scale, shift, in_place)
    return op, op


def _leaky_relu(settings: dict, arrays: dict[str, np.ndarray], where: str, in_place: bool) -> Ops:
    op = _leaky_relu_op(_number(settings, "alpha", where), in_place)
    return op, op


def _activation(make: Callable[[bool], Op]) -> Callable[..., Ops]:
    """The builder of a layer without settings or tensors, from `make(in_place) -> Op`."""
    def build(settings: dict, arrays: dict[str, np.ndarray], where: str, in_place: bool) -> Ops:
        op = make(in_place)
        return op, op
    return build


def _identity(settings: dict, arrays: dict[str, np.ndarray], where: str, in_place: bool) -> None:
    return None


class LayerOp(NamedTuple):
    """How this reader runs one layer type.

    `params` are the trained tensors (counted in `parameter_count`), `state`
    the other stored ones. By default each is `(n_in,)` and the layer keeps
    the width `n_in`; otherwise `layout(settings, n_in, where)` gives
    `(shapes of every tensor, output width)`, as for dense.
    """

    build: Callable[..., Ops | None]
    params: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    layout: Callable[[dict, int, str], tuple[dict[str, tuple[int, ...]], int]] | None = None

    def shapes(self, settings: dict, n: int, where: str) -> tuple[dict[str, tuple[int, ...]], int]:
        """`(tensor name -> expected shape, output width)` for an input width `n`."""
        if self.layout is not None:
            return self.layout(settings, n, where)
        return dict.fromkeys(self.params + self.state, (n,)), n


#: layer type -> how to run it. This reader's own table (it imports nothing from
#: mlpspec); `mlpspec.registry` refers to each entry and its tests check that both
#: hold the same names.
LAYER_OPS: dict[str, LayerOp] = {
    "dense.v1": LayerOp(_dense, params=("W", "b"), layout=_dense_layout),
    "relu.v1": LayerOp(_activation(_relu_op)),
    "leaky_relu.v1": LayerOp(_leaky_relu),
    "sigmoid.v1": LayerOp(_activation(_sigmoid_op)),
    "tanh.v1": LayerOp(_activation(_tanh_op)),
    "gelu.v1": LayerOp(_activation(_gelu_op)),
    "dropout.v1": LayerOp(_identity),
    "batchnorm.v1": LayerOp(_batchnorm, params=("gamma", "beta"), state=("running_mean", "running_var")),
}


# ---------------------------------------------------------------- the input contract

#: Raw sample dtypes a contract may name (NumPy names). For the integer ones
#: (and bool) every value must also lie within the dtype's range.
_RAW_DTYPES = ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
               "float16", "float32", "float64")


def _within(part: np.ndarray, low: Any, high: Any, whole: bool, scratch: np.ndarray) -> bool:
    """Whether `low <= part <= high` everywhere (and `part` is whole, if `whole`); NaN fails.

    `low`, `high`: scalars or per-feature rows. `scratch` is space of at least
    `part`'s rows, same columns and dtype. Measured per 65536 float32 values (the
    2-core EPYC): a min and a max reduction 7 us, an elementwise clip against
    scalars 25-50 us (against rows 24 us); for one sample of 784 the elementwise
    ops cost less than reductions (1.8 vs 2.4 us).
    """
    scratch = scratch[:len(part)]
    if part.size > 4096 and not isinstance(low, np.ndarray):  # scalar limits, a large block
        if not (low <= part.min() and part.max() <= high):  # NaN fails both comparisons
            return False
        if not whole:
            return True
        np.floor(part, out=scratch)
    else:
        np.maximum(part, low, out=scratch)  # NaN stays NaN and fails the comparison
        np.minimum(scratch, high, out=scratch)
        if whole:
            np.floor(scratch, out=scratch)
    return np.count_nonzero(np.equal(scratch, part)) == part.size


def _inward(value: int, dtype: np.dtype, up: bool) -> np.generic:
    """`value` in float `dtype`, rounded up (`up`) or down to a representable one."""
    with np.errstate(over="ignore"):
        cast = dtype.type(value)
    if up and float(cast) < value:
        cast = np.nextafter(cast, dtype.type(np.inf))
    elif not up and float(cast) > value:
        cast = np.nextafter(cast, dtype.type(-np.inf))
    return cast


def _integer_range(dtype: np.dtype) -> tuple[int, int] | None:
    """`(lowest, highest)` value of an integer or bool dtype; None for floats."""
    if dtype.kind == "b":
        return 0, 1
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    return None


def _contract_bounds(dtype_name: str, whole: bool, low: np.ndarray, high: np.ndarray,
                     scaling: dict) -> dict[str, Any]:
    """What raw and prepared values a model accepts, from its training range `low..high`.

    In scaled units (after the stored scaling) each feature's training range
    is `[zl_j, zh_j]`; the margin `M` is the widest of these ranges. Accepted:
    raw value `x_j` whose scaled value lies in `[zl_j - M, zh_j + M]`, and
    prepared feature `z_j` in the same interval. A sample from the training
    distribution is never near these limits (each feature may stray beyond its
    training range by at least that range's own width, and all features by the
    spread of the widest), while raw values given as prepared features or the
    other way round land far outside them for any scaling that changes values.
    `whole`: raw values must be whole numbers; `domain`: the integer dtype's range.
    """
    if scaling["kind"] == "none":
        offset, scale = np.zeros(1), np.ones(1)
    else:
        offset, scale = scaling["offset"], scaling["scale"]
    with np.errstate(over="ignore", invalid="ignore"):
        ends = (low - offset) / scale, (high - offset) / scale
        scaled_low, scaled_high = np.minimum(*ends), np.maximum(*ends)
        margin = float(np.max(scaled_high - scaled_low))
        if not math.isfinite(margin):
            margin = math.inf  # a range too wide for float64 limits nothing
        # NaN (inf - inf from an extreme file) must limit nothing, never everything.
        raw_low = _nan_to(low - margin * np.abs(scale), -np.inf)
        raw_high = _nan_to(high + margin * np.abs(scale), np.inf)
        prepared_low = _nan_to(scaled_low - margin, -np.inf)
        prepared_high = _nan_to(scaled_high + margin, np.inf)
    raw_low, raw_high = np.broadcast_to(raw_low, low.shape), np.broadcast_to(raw_high, low.shape)
    return {"whole": whole, "domain": _integer_range(np.dtype(dtype_name)),
            "scaled": (scaled_low, scaled_high),
            "raw": (raw_low, raw_high, float(raw_low.max()), float(raw_high.min())),
            "prepared": (prepared_low, prepared_high, float(prepared_low.max()),
                         float(prepared_high.min()))}


_SCALINGS = ("unit", "standardize", "minmax", "none")
_MISSING_POLICIES = ("error", "mean", "median", "most_frequent")
#: Cell texts that mean "no value" (stripped, lower-cased); mlpspec.data.tabular has the same list.
_MISSING_TEXTS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


def _names(names: Any, limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _numeric_cells(column: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A table column `(n,)` of numbers or text -> `(float64 values, missing mask)`."""
    if column.dtype.kind in "biuf":
        values = column.astype(np.float64)
        holes = np.isnan(values)
        if np.isinf(values).any():
            i = int(np.argmax(np.isinf(values)))
            raise InputError(f"row {i}, column {name!r}: expected a finite number, found {values[i]}")
        return values, holes
    values = np.empty(len(column))
    holes = np.zeros(len(column), dtype=bool)
    for i, cell in enumerate(column):
        if cell is None or (isinstance(cell, str) and cell.strip().lower() in _MISSING_TEXTS):
            holes[i] = True
            continue
        if isinstance(cell, (bool, np.bool_)):
            raise InputError(f"row {i}, column {name!r}: expected a number, found {cell!r}")
        try:
            value = float(cell)
        except (TypeError, ValueError):
            raise InputError(f"row {i}, column {name!r}: expected a number, found {cell!r}") from None
        if math.isnan(value):
            holes[i] = True
        elif math.isinf(value):
            raise InputError(f"row {i}, column {name!r}: expected a finite number, found {cell!r}")
        values[i] = value
    return values, holes


def _category_text(cell: Any) -> str | None:
    """A categorical cell as the training file's text, or None for a missing value."""
    if cell is None:
        return None
    if isinstance(cell, (float, np.floating)):
        if math.isnan(cell):
            return None
        return str(int(cell)) if float(cell).is_integer() else repr(float(cell))
    if isinstance(cell, (bool, np.bool_)):
        return str(bool(cell))
    text = str(cell).strip()
    return None if text.lower() in _MISSING_TEXTS else text


def _as_number(text: str) -> Any:
    """`text` as a float when it reads as one, else `text` unchanged."""
    try:
        return float(text)
    except ValueError:
        return text


def _num(value: Any) -> str:
    """A number for a message: integers as such, others with 6 significant digits."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def json_ready(value: Any) -> Any:
    """A decoded msgpack value as plain JSON: bytes as `"<N bytes>"`, NaN and inf as None."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _nan_to(array: np.ndarray, value: float) -> np.ndarray:
    return np.where(np.isnan(array), value, array)


# ---------------------------------------------------------------- the model


class Model:
    """A loaded model: read-only metadata plus a compiled forward pass.

    Attributes for inspection: `format_version` (major, minor), `writer`,
    `layers` (list of `{"type", "settings"}`), `inputs` (features),
    `sample_shape` (raw sample shape, e.g. (28, 28)), `classes` (names),
    `dtype`, `output` ("softmax" or "identity"), `loss`, `scaling`
    (`{"kind", "offset", "scale"}` as float64 arrays), `tensors`
    (name -> read-only array), `parameter_count` (trained values: dense W and
    b, batchnorm gamma and beta; running statistics excluded), `metrics`,
    `provenance` (`{"spec", "checksums", "cache_key"}`), `input_contract`
    (`{"dtype", "whole", "min", "max"}`: the raw training inputs' dtype
    name, whether they were all whole numbers, and the range of each feature
    as float64 `(inputs,)`; None for a format 1.0 file), `task`
    ("classification" or "regression"; format 1.2), and for regression
    `target_names` and `target_scaling` (`{"kind", "offset", "scale"}`,
    float64 `(targets,)`); `classes` is () for regression.
    """

    def __init__(self, document: dict[str, Any]):
        self._document = document
        version = document["format_version"]
        self.format_version: tuple[int, int] = (version[0], version[1])
        self.writer: str = _field(document, "writer", "", str, required=False, default="")
        self.metrics: dict = _field(document, "metrics", "", dict, required=False, default={})
        self.provenance: dict = _field(document, "provenance", "", dict, required=False, default={})
        self._read_preprocessing(_field(document, "preprocessing", "", dict))
        self._read_architecture(_field(document, "architecture", "", dict),
                                _field(document, "tensors", "", dict))
        self._read_task(document)

    # -- reading

    def _read_preprocessing(self, table: dict) -> None:
        path = "preprocessing"
        shape = _field(table, "sample_shape", path, list)
        if not 1 <= len(shape) <= MAX_NDIM or not all(type(d) is int and 1 <= d <= MAX_DIM for d in shape):
            raise ModelFormatError(f"{path}.sample_shape", f"expected 1 to {MAX_NDIM} positive integers, "
                                                           f"found {_show(shape)}")
        self.sample_shape: tuple[int, ...] = tuple(shape)
        scaling = _field(table, "scaling", path, dict)
        path = f"{path}.scaling"
        kind = _field(scaling, "kind", path, str)
        if kind not in _SCALINGS:
            raise ModelFormatError(f"{path}.kind", f"expected one of {', '.join(map(repr, _SCALINGS))}, "
                                                   f"found {_show(kind)}")
        features = math.prod(shape)
        offset = _tensor(_field(scaling, "offset", path, dict), f"{path}.offset")
        scale = _tensor(_field(scaling, "scale", path, dict), f"{path}.scale")
        for name, array in (("offset", offset), ("scale", scale)):
            if array.shape not in ((), (features,)):
                raise ModelFormatError(f"{path}.{name}.shape", f"expected [] or [{features}] (one value "
                                                               f"per feature), found {list(array.shape)}")
            if not np.all(np.isfinite(array)):
                raise ModelFormatError(f"{path}.{name}.data", "expected finite values, found NaN or inf")
        if np.any(scale == 0):
            raise ModelFormatError(f"{path}.scale.data", "expected non-zero values, found 0")
        self.scaling = {"kind": kind, "offset": offset, "scale": scale}
        self._read_input_contract(table)
        self._read_columns(table)

    def _read_columns(self, table: dict) -> None:
        """`preprocessing.columns` (format 1.2): how raw table rows become the inputs.

        Sets `columns` (the checked map, see docs/model-format.md; None when
        the model takes plain numeric samples) and what `_encode` needs.
        """
        self.columns: dict[str, Any] | None = None
        if "columns" not in table:
            return
        path = "preprocessing.columns"
        columns = _field(table, "columns", "preprocessing", dict)
        source = _field(columns, "source", path, list)
        label = _field(columns, "label", path, list)
        missing = _field(columns, "missing", path, str)
        unseen = _field(columns, "unseen", path, str)
        if missing not in _MISSING_POLICIES:
            raise ModelFormatError(f"{path}.missing", f"expected one of {', '.join(_MISSING_POLICIES)}, "
                                                      f"found {_show(missing)}")
        if unseen not in ("error", "ignore"):
            raise ModelFormatError(f"{path}.unseen", f"expected 'error' or 'ignore', found {_show(unseen)}")
        for key, names in (("source", source), ("label", label)):
            for i, name in enumerate(names):
                if not isinstance(name, str):
                    raise ModelFormatError(f"{path}.{key}[{i}]", f"expected a string, found {_show(name)}")
            _unique(names, f"{path}.{key}")  # a row's cells are found by name
        features = _field(columns, "features", path, list)
        width = 0
        checked = []
        for i, entry in enumerate(features):
            where = f"{path}.features[{i}]"
            if not isinstance(entry, dict):
                raise ModelFormatError(where, f"expected a map, found {_kind(entry)}")
            name = _field(entry, "name", where, str)
            if any(seen["name"] == name for seen in checked):
                raise ModelFormatError(f"{where}.name", f"expected each feature once, found {_show(name)} again")
            if name not in source:
                raise ModelFormatError(f"{where}.name", f"expected one of the source columns, found {_show(name)}")
            kind = _field(entry, "kind", where, str)
            if kind == "numeric":
                fill = _field(entry, "fill", where, (int, float), required=False, default=None)
                if fill is not None and not math.isfinite(fill):
                    raise ModelFormatError(f"{where}.fill", f"expected a finite number, found {fill!r}")
                categories: list[str] = []
                width += 1
            elif kind == "categorical":
                categories = _field(entry, "categories", where, list)
                if not categories or not all(isinstance(c, str) for c in categories):
                    raise ModelFormatError(f"{where}.categories", "expected a non-empty list of strings")
                fill = _field(entry, "fill", where, str, required=False, default=None)
                if fill is not None and fill not in categories:
                    raise ModelFormatError(f"{where}.fill", f"expected one of the categories, found {_show(fill)}")
                width += len(categories)
            else:
                raise ModelFormatError(f"{where}.kind", f"expected 'numeric' or 'categorical', found {_show(kind)}")
            if (fill is None) != (missing == "error"):
                raise ModelFormatError(f"{where}.fill", "expected a fill value exactly when "
                                                        f"missing is not 'error' (missing is {_show(missing)})")
            checked.append({"name": name, "kind": kind, "categories": categories, "fill": fill,
                            "index": {c: k for k, c in enumerate(categories)},
                            "at": source.index(name)})
        if not checked:
            raise ModelFormatError(f"{path}.features", "expected at least one feature column")
        if self.sample_shape != (width,):
            raise ModelFormatError(f"{path}.features", f"the columns encode to {width} inputs, but "
                                                       f"preprocessing.sample_shape is {list(self.sample_shape)}")
        self.columns = {"source": source, "label": label, "missing": missing, "unseen": unseen,
                        "features": [{k: c[k] for k in ("name", "kind", "categories", "fill")}
                                     for c in checked]}
        self._features = checked

    def _read_input_contract(self, table: dict) -> None:
        """`preprocessing.input` (format 1.1): the raw training inputs' dtype and range.

        Sets `input_contract` (`{"dtype", "whole", "min", "max"}`, the range
        per feature as float64 `(inputs,)`; None for a 1.0 file) and the
        bounds `_inputs` checks samples against (see `_contract_bounds`).
        """
        path = "preprocessing.input"
        self.input_contract: dict[str, Any] | None = None
        self._bounds: dict[str, Any] | None = None
        if "input" not in table:
            if self.format_version >= (1, 1):
                raise ModelFormatError(path, "missing (files of format 1.1 and later record the raw "
                                             "inputs the model was trained on)")
            return  # format 1.0: shape, dtype kind and finiteness are all that is checked
        contract = _field(table, "input", "preprocessing", dict)
        dtype_name = _field(contract, "dtype", path, str)
        if dtype_name not in _RAW_DTYPES:
            raise ModelFormatError(f"{path}.dtype", f"expected one of {', '.join(_RAW_DTYPES)}, "
                                                    f"found {_show(dtype_name)}")
        whole = _field(contract, "whole", path, bool)
        if not whole and _integer_range(np.dtype(dtype_name)) is not None:
            raise ModelFormatError(f"{path}.whole", f"expected true ({dtype_name} values are whole "
                                                    f"numbers), found false")
        features = math.prod(self.sample_shape)
        low, high = (_tensor(_field(contract, key, path, dict), f"{path}.{key}", (features,))
                     .astype(np.float64) for key in ("min", "max"))
        for key, array in (("min", low), ("max", high)):
            if not np.all(np.isfinite(array)):
                raise ModelFormatError(f"{path}.{key}.data", "expected finite values, found NaN or inf")
        if np.any(low > high):
            j = int(np.argmax(low > high))
            raise ModelFormatError(f"{path}.min.data", f"expected min <= max for every feature, found "
                                                       f"{float(low[j])!r} > {float(high[j])!r} "
                                                       f"for feature {j}")
        self.input_contract = {"dtype": dtype_name, "whole": whole, "min": low, "max": high}
        self._bounds = _contract_bounds(dtype_name, whole, low, high, self.scaling)

    def _read_architecture(self, table: dict, tensors: dict) -> None:
        path = "architecture"
        self.inputs: int = _count(table, "inputs", path, 1)
        if self.inputs != math.prod(self.sample_shape):
            raise ModelFormatError(f"{path}.inputs", f"expected {math.prod(self.sample_shape)} (the "
                                                     f"product of preprocessing.sample_shape "
                                                     f"{list(self.sample_shape)}), found {self.inputs}")
        dtype_name = _field(table, "dtype", path, str)
        if dtype_name not in _DTYPES:
            raise ModelFormatError(f"{path}.dtype", f"expected one of {', '.join(_DTYPES)}, "
                                                    f"found {_show(dtype_name)}")
        self.dtype = np.dtype(dtype_name)
        self.output: str = _field(table, "output", path, str)
        if self.output not in ("softmax", "identity"):
            raise ModelFormatError(f"{path}.output", f"expected 'softmax' or 'identity', "
                                                     f"found {_show(self.output)}")
        self.loss: str = _field(table, "loss", path, str, required=False, default="")
        layers = _field(table, "layers", path, list)
        if not 1 <= len(layers) <= MAX_LAYERS:
            raise ModelFormatError(f"{path}.layers", f"expected 1 to {MAX_LAYERS} layers, found {len(layers)}")

        self.layers: list[dict[str, Any]] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.parameter_count = 0
        self._ops: list[Op] = []  # for batches of more than SMALL_BATCH samples
        self._small_ops: list[Op] = []
        dense_layers: list[tuple[int, np.ndarray, np.ndarray]] = []  # (position in _ops, W, b)
        n = self.inputs
        fresh = False  # whether the array reaching this layer is ours to overwrite
        for i, layer in enumerate(layers):
            where = f"{path}.layers[{i}]"
            if not isinstance(layer, dict):
                raise ModelFormatError(where, f"expected a map with type and settings, found {_kind(layer)}")
            kind = _field(layer, "type", where, str)
            if kind not in LAYER_OPS:
                raise ModelFormatError(f"{where}.type", f"unknown layer type {_show(kind)}; this reader "
                                                        f"knows {', '.join(LAYER_OPS)} (a newer "
                                                        f"mlpspec may know more)")
            settings = _field(layer, "settings", where, dict)
            self.layers.append({"type": kind, "settings": settings})
            where = f"{where}.settings"
            layer_op = LAYER_OPS[kind]
            shapes, outputs = layer_op.shapes(settings, n, where)
            arrays = {}
            for key, shape in shapes.items():
                name = f"layers.{i}.{key}"
                entry = tensors.get(name)
                if entry is None:
                    raise ModelFormatError(f'tensors["{name}"]', f"missing ({kind} layer {i} needs "
                                                                 f"{', '.join(shapes)})")
                array = _tensor(entry, f'tensors["{name}"]', shape)
                if array.dtype != self.dtype:
                    raise ModelFormatError(f'tensors["{name}"].dtype', f"expected {dtype_name} (the "
                                                                        f"architecture's dtype), found "
                                                                        f"{array.dtype.name}")
                arrays[key] = self.tensors[name] = array
            self.parameter_count += sum(arrays[key].size for key in layer_op.params)
            n = outputs

            ops = layer_op.build(settings, arrays, where, fresh)
            if ops is None:
                continue  # the identity at inference (dropout)
            if kind == "dense.v1":
                dense_layers.append((len(self._ops), arrays["W"], arrays["b"]))
            self._ops.append(ops[0])
            self._small_ops.append(ops[1])
            fresh = True  # every op returns a new array or the one it was allowed to overwrite
        self.outputs: int = n
        # Every dense layer but the last writes its batch output into a kept buffer: a later
        # dense layer reads it and makes a new array, so no kept buffer reaches the caller.
        buffers = _Buffers()
        for position, W, b in dense_layers[:-1]:
            self._ops[position] = _dense_op(W, b, small=False, kept=(buffers, position))

        # Scaling in the compute dtype, as the trainer's `Scaling.apply` does it.
        offset = self.scaling["offset"].astype(self.dtype)
        scale = self.scaling["scale"].astype(self.dtype)
        self._offset = None if self.scaling["kind"] == "none" or not offset.any() else offset
        self._scale = None if self.scaling["kind"] == "none" or np.all(scale == 1) else scale

    def _read_task(self, document: dict) -> None:
        """`task` (format 1.2; absent = classification) and what the outputs mean:
        `classes` for classification, `targets` (names and scaling) for regression."""
        self.task: str = _field(document, "task", "", str, required=False, default="classification")
        if self.task not in ("classification", "regression"):
            raise ModelFormatError("task", f"expected 'classification' or 'regression', "
                                           f"found {_show(self.task)}")
        self.target_names: tuple[str, ...] = ()
        self.target_scaling: dict[str, Any] | None = None
        if self.task == "classification":
            if "targets" in document:
                raise ModelFormatError("targets", "unexpected in a classification model "
                                                  "(targets belong to task = 'regression')")
            self._read_classes(document)
            return
        if "classes" in document:
            raise ModelFormatError("classes", "unexpected in a regression model (its outputs are "
                                              "the targets, named in `targets`)")
        if self.output != "identity":
            raise ModelFormatError("architecture.output", f"expected 'identity' for a regression "
                                                          f"model, found {_show(self.output)}")
        self.classes: tuple[str, ...] = ()
        table = _field(document, "targets", "", dict)
        names = self._output_names(table, "names", "targets")
        scaling = _field(table, "scaling", "targets", dict)
        path = "targets.scaling"
        kind = _field(scaling, "kind", path, str)
        if kind not in ("standardize", "none"):
            raise ModelFormatError(f"{path}.kind", f"expected 'standardize' or 'none', found {_show(kind)}")
        arrays = {}
        for key in ("offset", "scale"):
            array = _tensor(_field(scaling, key, path, dict), f"{path}.{key}", (self.outputs,))
            if array.dtype != np.float64 or not np.all(np.isfinite(array)):
                raise ModelFormatError(f"{path}.{key}", "expected finite float64 values, one per target")
            arrays[key] = array
        if np.any(arrays["scale"] == 0):
            raise ModelFormatError(f"{path}.scale.data", "expected non-zero values, found 0")
        self.target_names = tuple(names)
        self.target_scaling = {"kind": kind, **arrays}

    def _read_classes(self, document: dict) -> None:
        self.classes: tuple[str, ...] = tuple(self._output_names(document, "classes", ""))

    def _output_names(self, table: dict, key: str, path: str) -> list[str]:
        """A list of one string per network output (class or target names)."""
        names = _field(table, key, path, list)
        where = _join(path, key)
        if len(names) != self.outputs:
            raise ModelFormatError(where, f"expected {self.outputs} names (the network's "
                                          f"outputs), found {len(names)}")
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise ModelFormatError(f"{where}[{i}]", f"expected a string, found {_show(name)}")
        _unique(names, where)  # answers are keyed and matched by name
        return names

    # -- inference
    #
    # predict, predict_proba and logits take RAW samples, as the training data
    # source gave them, and always apply the stored preprocessing; the *_prepared
    # variants take features that are already preprocessed. Each checks what it
    # is given against the stored input contract and refuses what does not fit.

    def preprocess(self, X: Any) -> np.ndarray:
        """Raw samples -> the network's inputs `(n, inputs)` in the model's dtype.

        `X`: one raw sample of shape `sample_shape` or a batch
        `(n, *sample_shape)`, any real numeric dtype, values as the training
        data source gave them (uint8 pixels, CSV numbers). They are checked
        against the input contract, flattened in C order and scaled exactly as
        the trainer's `Scaling.apply` does (cast to the model's dtype, subtract
        the offset, divide by the scale). Raises `InputError`.
        """
        return self._inputs(X, prepared=False)[0]

    def _inputs(self, X: Any, prepared: bool) -> tuple[np.ndarray, bool]:
        """`(inputs (n, features) in the model's dtype, single)`; `single` when one sample was given.

        Raw samples (`prepared=False`) are checked and scaled; prepared
        features, `(inputs,)` or `(n, inputs)`, are checked only. A model with
        `columns` first encodes raw rows (see `encode`).
        """
        if not prepared and self.columns is not None:
            X, single = self._encode(X)
            flat = self._checked_numbers(X)
            if self._bounds is not None:
                self._check_contract(flat, prepared, single)
            return self._scaled(flat), single
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as error:  # ragged nested lists, say
            raise InputError(f"expected an array of numbers, found input NumPy cannot turn into "
                             f"one ({error})") from None
        shape, dtype = X.shape, X.dtype
        if dtype.kind not in "biuf":
            raise InputError(f"expected real numbers, found an array of {dtype} of shape {shape}")
        sample = (self.inputs,) if prepared else self.sample_shape
        if shape == sample:
            n, single = 1, True
        elif len(shape) == len(sample) + 1 and shape[1:] == sample:
            n, single = shape[0], False
        else:
            raise InputError(self._shape_message(X, prepared))
        flat = X.reshape(n, self.inputs)
        # Floats that pass the cheap combined test (finite, whole where required, within
        # the accepted range) need no closer look; anything else gets the full checks,
        # which name the culprit or find nothing wrong after all.
        if not (dtype.kind == "f" and self._bounds is not None and self._accepts(flat, prepared)):
            if dtype.kind == "f" and not np.isfinite(flat).all():
                raise InputError(f"expected finite numbers, found NaN or infinity in {dtype} "
                                 f"input of shape {shape}")
            if self._bounds is not None:
                self._check_contract(flat, prepared, single)
        if prepared:
            return flat.astype(self.dtype, copy=False), single
        return self._scaled(flat), single

    def _scaled(self, flat: np.ndarray) -> np.ndarray:
        """The trainer's Scaling.apply: cast, subtract the offset, divide by the scale.

        A new array. With `dtype=` a ufunc casts its inputs to the model's dtype
        first and computes in it, so casting inside the first operation gives
        the same bits as casting before it, without a pass of its own.
        """
        if self._offset is not None:
            out = np.subtract(flat, self._offset, dtype=self.dtype)
            if self._scale is not None:
                out /= self._scale
            return out
        if self._scale is not None:
            return np.divide(flat, self._scale, dtype=self.dtype)
        return flat.astype(self.dtype)

    @staticmethod
    def _checked_numbers(flat: np.ndarray) -> np.ndarray:
        if not np.isfinite(flat).all():
            i, j = (int(k) for k in np.argwhere(~np.isfinite(flat))[0])
            raise InputError(f"row {i}, input {j}: expected a finite number, found {flat[i, j]}")
        return flat

    def encode(self, rows: Any) -> np.ndarray:
        """Raw table rows -> the encoded inputs `(n, inputs)` float64, before scaling.

        For a model with `columns` (trained on a CSV file); see `_encode`.
        """
        if self.columns is None:
            raise InputError("this model takes plain numeric samples, not table rows (it has no "
                             "preprocessing.columns)")
        return self._encode(rows)[0]

    def _encode(self, rows: Any) -> tuple[np.ndarray, bool]:
        """`(encoded (n, inputs) float64, single)` from raw table rows.

        `rows`: a record (dict keyed by column name) or a list of them; or a
        2-D array (numeric, str or object) whose columns are either all the
        columns of the training file (`columns["source"]`, label included,
        its cells ignored) or just the feature columns in order; a 1-D array
        or list is one row. A missing value (None, NaN, or a cell such as "",
        "NA", "?") takes the stored fill value, or is refused when the model
        was trained with `missing = "error"`. A categorical cell matches its
        category as text (a number as its shortest form: 2.0 -> "2"); an
        unseen category is all zeros (`unseen = "ignore"`) or refused.
        """
        features = self._features
        single = False
        if isinstance(rows, Mapping):
            rows, single = [rows], True
        if isinstance(rows, (list, tuple)) and rows and all(isinstance(r, Mapping) for r in rows):
            cells = []
            for i, record in enumerate(rows):
                absent = [f["name"] for f in features if f["name"] not in record]
                if absent:
                    raise InputError(f"record {i}: no value for column {absent[0]!r} (give None for a "
                                     f"missing value); the model reads {', '.join(repr(f['name']) for f in features)}")
                cells.append([record[f["name"]] for f in features])
            table = np.empty((len(cells), len(features)), dtype=object)
            table[...] = cells if cells else table
        else:
            try:
                table = np.asarray(rows)
                if table.dtype.kind not in "biufUO":
                    table = np.asarray(rows, dtype=object)
            except (ValueError, TypeError) as error:
                raise InputError(f"expected table rows (a 2-D array or a list of records), found input "
                                 f"NumPy cannot turn into one ({error})") from None
            if table.ndim == 1:
                table, single = table[None, :], True
            source = self.columns["source"]
            if table.ndim != 2 or table.shape[1] not in (len(source), len(features)):
                raise InputError(f"expected rows of the {len(source)} columns of the training file "
                                 f"({_names(source)}) or of the {len(features)} feature columns "
                                 f"({_names([f['name'] for f in features])}); found an array of shape "
                                 f"{table.shape}")
            if table.shape[1] == len(source) and len(source) != len(features):
                table = table[:, [f["at"] for f in features]]
        out = np.zeros((len(table), self.inputs))
        at = 0
        for j, feature in enumerate(features):
            column = table[:, j]
            if feature["kind"] == "numeric":
                values, holes = _numeric_cells(column, feature["name"])
                if holes.any():
                    self._fill_or_refuse(holes, feature)
                    values[holes] = feature["fill"]
                out[:, at] = values
                at += 1
                continue
            index = feature["index"]
            if column.dtype.kind in "biuf" and not np.isnan(column.astype(np.float64)).all() \
                    and not any(isinstance(_as_number(c), float) for c in feature["categories"]):
                # No category of this column is a number, so numbers here are no category:
                # most likely encoded rows (encode()'s one-hot columns) given as raw ones,
                # which unseen = "ignore" would otherwise answer with all zeros.
                raise InputError(f"column {feature['name']!r}: expected its categories as text "
                                 f"({_names(feature['categories'])}), found numbers (an array of "
                                 f"{table.dtype}); predict() takes raw rows, not the encoded "
                                 f"inputs that encode() returns")
            for i, cell in enumerate(column):
                text = _category_text(cell)
                if text is None:
                    if feature["fill"] is None:
                        self._fill_or_refuse(np.array([i]), feature, indices=True)
                    text = feature["fill"]
                k = index.get(text)
                if k is None:
                    if self.columns["unseen"] == "error":
                        raise InputError(f"row {i}, column {feature['name']!r}: category {text!r} was not "
                                         f"in the training data ({_names(feature['categories'])}); the "
                                         f"model was trained with data.unseen = \"error\"")
                    continue  # unseen = "ignore": all zeros
                out[i, at + k] = 1.0
            at += len(feature["categories"])
        return out, single

    def _fill_or_refuse(self, holes: np.ndarray, feature: dict, indices: bool = False) -> None:
        if feature["fill"] is not None:
            return
        i = int(holes[0]) if indices else int(np.argmax(holes))
        raise InputError(f"row {i}, column {feature['name']!r}: missing value, and the model was trained "
                         f"with data.missing = \"error\" (it has no value to fill in)")

    def _accepts(self, flat: np.ndarray, prepared: bool) -> bool:
        """Whether every value of float `flat` `(n, inputs)` surely passes the contract.

        True only if every value is finite, lies within the accepted range of
        its feature (and of the trained dtype's domain) and, for raw values of
        a model trained on whole numbers, is whole: then `_check_contract`
        would accept the whole batch. False means "look closer", not "refuse".
        One fused test, `floor(clip(x, low, high)) == x` (NaN and infinity
        fail it), in blocks that stay in cache. It replaces a finiteness pass
        and up to five reductions with their temporaries: the input handling
        of one 28x28 sample took 5.9 us instead of 8.4, of a batch of 10000
        7 ms instead of 17 (docs/performance.md).
        """
        low, high, whole = self._accept_bounds(flat.dtype, prepared)
        rows = max(1, CHECK_BLOCK // max(1, flat.shape[1]))
        if len(flat) <= rows:  # one block (every small batch): no slicing
            return _within(flat, low, high, whole, np.empty(flat.shape, flat.dtype))
        buffer = np.empty((rows, flat.shape[1]), flat.dtype)
        return all(_within(flat[start:start + rows], low, high, whole, buffer[:len(flat) - start])
                   for start in range(0, len(flat), rows))

    def _accept_bounds(self, dtype: np.dtype, prepared: bool) -> tuple[Any, Any, bool]:
        """`(low, high, whole)` for `_accepts` in float `dtype`, made once per dtype.

        Never wider than what `_check_contract` accepts: the per-feature limits
        are the same values it compares with; the domain limits are rounded
        inward to `dtype`; infinite limits become the largest finite value, so
        that infinity fails. Scalars when the domain is all that limits (every
        uint8 pixel value, say).
        """
        key = ("accept", prepared, dtype)
        cache = self._bounds.setdefault("cast", {})
        if key in cache:
            return cache[key]
        low, high, low_max, high_min = self._bounds["prepared" if prepared else "raw"]
        if dtype != low.dtype:
            low, high = self._bounds_as(dtype, prepared)
        domain = None if prepared else self._bounds["domain"]
        if domain is not None:
            lowest, highest = _inward(domain[0], dtype, up=True), _inward(domain[1], dtype, up=False)
            if domain[0] >= low_max and domain[1] <= high_min:
                low, high = lowest, highest
            else:
                low, high = np.maximum(low, lowest), np.minimum(high, highest)
        finite = np.finfo(dtype).max
        low = np.maximum(low, -finite).astype(dtype)
        high = np.minimum(high, finite).astype(dtype)
        cache[key] = (low, high, not prepared and self._bounds["whole"])
        return cache[key]

    def _check_contract(self, flat: np.ndarray, prepared: bool, single: bool) -> None:
        """Refuse values the model cannot have been trained on (see `_contract_bounds`).

        `flat` is `(n, inputs)` in the caller's dtype. Raw values of a model
        trained on whole numbers only must be whole numbers (within the
        dtype's range, for an integer dtype); every value must lie within the
        accepted range of its feature.
        """
        if flat.size == 0:
            return
        bounds, contract = self._bounds, self.input_contract
        trained = contract["dtype"]
        own = _integer_range(flat.dtype)
        low, high, low_max, high_min = bounds["prepared" if prepared else "raw"]
        # Reductions first (no array-sized temporaries); the masks only to name a culprit.
        if not prepared and bounds["whole"] and own is None:
            fraction = np.floor(flat)
            np.subtract(flat, fraction, out=fraction)
            if fraction.any():
                kind = "" if bounds["domain"] else " that were all whole numbers"
                self._refuse(flat, flat != np.floor(flat), single, prepared, lambda v, j: (
                    f"{float(v)!r} is not a whole number, but the model was trained on raw "
                    f"{trained} values{kind} ({_num(contract['min'].min())} to "
                    f"{_num(contract['max'].max())}); these look already scaled. Pass raw "
                    f"samples as the data source gives them, or prepared features to "
                    f"predict_prepared()"))
        if not prepared and bounds["domain"] is not None:
            lowest, highest = bounds["domain"]
            if own is None or own[0] < lowest or own[1] > highest:
                if float(flat.min()) < lowest or float(flat.max()) > highest:
                    self._refuse(flat, (flat < float(lowest)) | (flat > float(highest)), single,
                                 prepared, lambda v, j: (
                                     f"{_num(v)} is outside the range of {trained} ({lowest} to "
                                     f"{highest}), the raw values the model was trained on"))
            own = (lowest, highest)  # what the values are known to lie within now
        if own is not None and own[0] >= low_max and own[1] <= high_min:
            return  # every value of this range is accepted (uint8 pixels, say)
        if flat.dtype.kind == "f" and flat.dtype != low.dtype:
            # Bounds in the caller's float dtype compare without casting every value
            # (their rounding moves a limit by one unit in the last place).
            low, high = self._bounds_as(flat.dtype, prepared)
        if len(flat) <= SMALL_BATCH:
            if not (np.less(flat, low).any() or np.greater(flat, high).any()):
                return
        elif not (np.less(flat.min(axis=0), low).any() or np.greater(flat.max(axis=0), high).any()):
            return
        outside = (flat < low) | (flat > high)
        if prepared:
            self._refuse(flat, outside, single, prepared, lambda v, j: (
                f"{_num(v)} is far outside the prepared values this feature had in training "
                f"({_num(bounds['scaled'][0][j])} to {_num(bounds['scaled'][1][j])}; accepted: "
                f"{_num(low[j])} to {_num(high[j])}); these look like raw samples, which go to "
                f"predict(), predict_proba() or logits()"))
        self._refuse(flat, outside, single, prepared, lambda v, j: (
            f"{_num(v)} is far outside the values this feature had in training "
            f"({_num(contract['min'][j])} to {_num(contract['max'][j])}; accepted: {_num(low[j])} "
            f"to {_num(high[j])}); the model takes raw samples as the data source gives them "
            f"(prepared features go to predict_prepared())"))

    def _bounds_as(self, dtype: np.dtype, prepared: bool) -> tuple[np.ndarray, np.ndarray]:
        key = ("prepared" if prepared else "raw", dtype)
        cast = self._bounds.setdefault("cast", {})
        if key not in cast:
            low, high = self._bounds[key[0]][:2]
            with np.errstate(over="ignore"):  # beyond float16: no limit
                cast[key] = (low.astype(dtype), high.astype(dtype))
        return cast[key]

    def _refuse(self, flat: np.ndarray, bad: np.ndarray, single: bool, prepared: bool,
                problem: Callable[[Any, int], str]) -> NoReturn:
        """Raise `InputError` for the first flagged value, naming where it is and how many more."""
        i, j = (int(k) for k in np.argwhere(bad)[0])
        if prepared or len(self.sample_shape) == 1:
            where = f"feature {j}"
        else:
            where = f"value at {tuple(int(k) for k in np.unravel_index(j, self.sample_shape))}"
        where = where if single else f"sample {i}, {where}"
        count = int(bad.sum())
        more = f" ({count} of {flat.size} values are refused)" if count > 1 else ""
        raise InputError(f"{where}: {problem(flat[i, j], j)}{more}")

    def _shape_message(self, X: np.ndarray, prepared: bool) -> str:
        sample, inputs = tuple(self.sample_shape), self.inputs
        batch = ", ".join(map(str, sample))
        found = f"found {X.dtype} of shape {X.shape}"
        if prepared:
            hint = ("; raw samples go to predict(), predict_proba() or logits()"
                    if X.shape[-len(sample):] == sample and sample != (inputs,) else "")
            return f"expected prepared features of shape ({inputs},) or (n, {inputs}); {found}{hint}"
        hint = (f"; prepared features of shape (n, {inputs}) go to predict_prepared()"
                if X.shape[-1:] == (inputs,) and sample != (inputs,) else "")
        return f"expected raw samples of shape {sample} or (n, {batch}); {found}{hint}"

    def _forward(self, X: Any, prepared: bool) -> tuple[np.ndarray, bool]:
        Z, single = self._inputs(X, prepared)
        given = Z
        for op in self._small_ops if len(Z) <= SMALL_BATCH else self._ops:
            Z = op(Z)
        if Z is given and prepared:  # a network of dropout only: never hand back the caller's array
            Z = Z.copy()
        return Z, single

    def logits(self, X: Any) -> np.ndarray:
        """The network's outputs (before softmax) for raw samples: `(n, outputs)`, or `(outputs,)` for one.

        For a regression model these are the standardised targets the network
        was trained on; `predict` gives the values in their own units."""
        Z, single = self._forward(X, prepared=False)
        return Z[0] if single else Z

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities for raw samples: `(n, classes)`, or `(classes,)` for one sample.

        For a softmax model (trained with softmax_cross_entropy.v1) the softmax
        of the logits; rows sum to 1. For an "identity" model (trained with
        mse.v1 on one-hot targets) the raw outputs unchanged: estimates of the
        one-hot target that need not sum to 1 nor lie in [0, 1]. A regression
        model has no probabilities: TypeError.
        """
        self._refuse_regression("predict_proba")
        return self._probabilities(*self._forward(X, prepared=False))

    def predict(self, X: Any) -> np.ndarray | int:
        """Class indices for raw samples: `(n,)` int64, or one `int` for one sample (argmax).

        A regression model (`task == "regression"`) returns the predicted values
        in the targets' own units: float64 `(n, targets)`, or `(targets,)` for
        one sample (the outputs de-standardised: `outputs * scale + offset`,
        the trainer's `Scaling.invert`).
        """
        return self._answer(*self._forward(X, prepared=False))

    def logits_prepared(self, features: Any) -> np.ndarray:
        """`logits` for prepared features `(n, inputs)` or `(inputs,)` (what `preprocess` returns)."""
        Z, single = self._forward(features, prepared=True)
        return Z[0] if single else Z

    def predict_proba_prepared(self, features: Any) -> np.ndarray:
        """`predict_proba` for prepared features `(n, inputs)` or `(inputs,)`."""
        self._refuse_regression("predict_proba_prepared")
        return self._probabilities(*self._forward(features, prepared=True))

    def predict_prepared(self, features: Any) -> np.ndarray | int:
        """`predict` for prepared features `(n, inputs)` or `(inputs,)`."""
        return self._answer(*self._forward(features, prepared=True))

    def _refuse_regression(self, method: str) -> None:
        if self.task == "regression":
            raise TypeError(f"{method}: this is a regression model ({self.outputs} targets: "
                            f"{', '.join(self.target_names)}); it has no class probabilities. "
                            f"predict() returns its values")

    def _answer(self, Z: np.ndarray, single: bool) -> np.ndarray | int:
        return self._values(Z, single) if self.task == "regression" else self._labels(Z, single)

    def _values(self, Z: np.ndarray, single: bool) -> np.ndarray:
        """Regression outputs in the targets' units: the trainer's `Scaling.invert`, float64."""
        scaling = self.target_scaling
        values = Z.astype(np.float64)
        if scaling["kind"] != "none":
            values = values * scaling["scale"]
            values += scaling["offset"]
        return values[0] if single else values

    def _probabilities(self, Z: np.ndarray, single: bool) -> np.ndarray:
        P = _softmax(Z) if self.output == "softmax" else Z
        return P[0] if single else P

    @staticmethod
    def _labels(Z: np.ndarray, single: bool) -> np.ndarray | int:
        return int(Z[0].argmax()) if single else Z.argmax(axis=1)

    # -- writing back

    def to_bytes(self) -> bytes:
        """The file re-encoded from what was read (byte-identical for canonical files)."""
        return encode({k: v for k, v in self._document.items() if k != "checksum"})

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (what `mlpspec inspect --json` prints).

        Values are plain JSON whatever the file holds: bytes become
        `"<N bytes>"` and NaN or infinite floats become None. `input` is the
        contract in brief (`{"dtype", "whole", "min", "max"}`, over all features), None
        for a format 1.0 file.
        """
        contract = self.input_contract
        return json_ready({
            "format_version": list(self.format_version),
            "writer": self.writer,
            "inputs": self.inputs,
            "sample_shape": list(self.sample_shape),
            "input": None if contract is None else {"dtype": contract["dtype"],
                                                    "whole": contract["whole"],
                                                    "min": float(contract["min"].min()),
                                                    "max": float(contract["max"].max())},
            "scaling": self.scaling["kind"],
            "dtype": self.dtype.name,
            "output": self.output,
            "loss": self.loss,
            "layers": self.layers,
            "parameter_count": self.parameter_count,
            "task": self.task,
            "classes": list(self.classes),
            "targets": None if self.target_scaling is None else {
                "names": list(self.target_names), "scaling": self.target_scaling["kind"],
                "offset": self.target_scaling["offset"].tolist(),
                "scale": self.target_scaling["scale"].tolist()},
            "metrics": self.metrics,
            "provenance": self.provenance,
        })

    def __repr__(self) -> str:
        kinds = ", ".join(layer["type"] for layer in self.layers)
        return (f"Model({self.inputs} -> {self.outputs}, {self.parameter_count} parameters, "
                f"format {self.format_version[0]}.{self.format_version[1]}: {kinds})")
