"""BLAS operations NumPy does not expose, called in NumPy's own OpenBLAS.

    gemm_tn(A, B, C, alpha, beta)   C <- alpha A^T B + beta C, in place
                                    A (k, m), B (k, n), C (m, n), all C-contiguous
    gemm_nn(A, B, C, alpha, beta)   C <- alpha A B + beta C, in place
                                    A (m, k), B (k, n), C (m, n)
    axpy(alpha, x, y)               y <- y + alpha x, in place (same shape)
    Fixed(array)                    an in-place operand whose address is read once
                                    (C of a gemm, x and y of axpy)

Why: a momentum step is `v <- mu v + X^T dY; W <- W - lr v`. With
`np.matmul` the gradient X^T dY must first be written to its own array (it
always overwrites `out`), then read back by the update: for 784-800-800-10
that is 5 MB written and read again every step on top of the velocity and
the weights. BLAS's GEMM takes the accumulation itself (`beta = mu`, `C = v`),
and its AXPY applies `W -= lr v` in one pass (threaded by OpenBLAS for large
arrays). Measured through `fit` on 2 cores (784-800-800-10, batch 128,
momentum, one process alternating the two paths): 3.25-3.35 s/epoch with
matmul and the NumPy update, 2.81-2.82 s/epoch fused.

The dense layer's training forward uses `gemm_nn` the same way: its output
starts as the bias, broadcast, and the product accumulates onto it (beta =
1), so `Y = X W + b` costs no separate pass over Y to add b.

Which library: NumPy's wheels bundle OpenBLAS ("scipy-openblas64": 64-bit
integers, symbols named `scipy_cblas_sgemm64_` ...). It is found among the
libraries threadpoolctl sees loaded, inside NumPy's own installation, so
every product still comes from the BLAS that `np.matmul` uses and that
`mlpspec.compute.environment()` records. When it is not there (NumPy built
against MKL, Accelerate or a system BLAS), `AVAILABLE` is False and the
trainer keeps its plain NumPy path; nothing here is then called.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS enum values

_int = ctypes.c_int64  # ILP64: the "64_" symbols take 64-bit integers
_ptr = ctypes.c_void_p


def _load():
    """`{dtype: (gemm, axpy)}` from NumPy's bundled OpenBLAS, or {} if it is not there."""
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - a dependency of mlpspec
        return {}
    numpy_home = Path(np.__file__).resolve().parent.parent
    for info in threadpoolctl.threadpool_info():
        path = Path(info.get("filepath") or "")
        if info.get("internal_api") != "openblas" or numpy_home not in path.resolve().parents:
            continue
        try:
            library = ctypes.CDLL(str(path))
            found = {}
            for dtype, letter, scalar in ((np.dtype(np.float32), "s", ctypes.c_float),
                                          (np.dtype(np.float64), "d", ctypes.c_double)):
                gemm = getattr(library, f"scipy_cblas_{letter}gemm64_")
                gemm.restype = None
                gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, _int, _int, _int, scalar,
                                 _ptr, _int, _ptr, _int, scalar, _ptr, _int]
                axpy = getattr(library, f"scipy_cblas_{letter}axpy64_")
                axpy.restype = None
                axpy.argtypes = [_int, scalar, _ptr, _int, _ptr, _int]
                found[dtype] = (gemm, axpy)
            return found
        except (OSError, AttributeError):
            return {}
    return {}


_FUNCTIONS = _load()
AVAILABLE = bool(_FUNCTIONS)


def _address(array: np.ndarray, dtype: np.dtype) -> int:
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise ValueError(f"blas: expected a C-contiguous {dtype} array, got {array.dtype} "
                         f"with strides {array.strides}")
    try:  # 0.3 us; `array.ctypes.data` builds a ctypes object first (1.8 us)
        return ctypes.addressof(_char.from_buffer(array))
    except (TypeError, ValueError, BufferError):  # read-only or empty
        return array.ctypes.data


_char = ctypes.c_char


class Fixed:
    """An array that BLAS calls write in place, its address read once.

    For arrays that live as long as their holder and never move (an
    optimizer's parameters and velocities): reading an address costs ~0.5 us,
    about a fifth of a small product's call overhead. `array` is kept, so the
    address stays valid while this object lives; a holder that may be handed
    other arrays checks `fixed.array is given` before each use.
    """

    __slots__ = ("array", "address")

    def __init__(self, array: np.ndarray):
        self.array = array
        self.address = _address(array, array.dtype)


def _operand(array: np.ndarray | Fixed, dtype: np.dtype | None = None) -> tuple[np.ndarray, int]:
    """`(array, address)` of an output or in-place operand, checked to be of `dtype` if given."""
    if type(array) is Fixed:
        if dtype is not None and array.array.dtype != dtype:
            raise ValueError(f"blas: expected a C-contiguous {dtype} array, got {array.array.dtype}")
        return array.array, array.address
    return array, _address(array, array.dtype if dtype is None else dtype)


def _matrix(C: np.ndarray, m: int, n: int, name: str) -> np.ndarray:
    """`C` as an `(m, n)` matrix; a 1-D `(n,)` output (a bias) is the row `(1, n)`."""
    if C.shape == (m, n):
        return C
    if m == 1 and C.shape == (n,):
        return C.reshape(1, n)
    raise ValueError(f"blas.{name}: output of shape {C.shape}, expected ({m}, {n})")


def _gemm(name: str, transpose_a: bool, A: np.ndarray, B: np.ndarray, C: np.ndarray | Fixed,
          alpha: float, beta: float) -> None:
    """C <- alpha op(A) B + beta C in place, op(A) = A^T or A; `name` for the errors."""
    C, c = _operand(C)
    if transpose_a:
        k, m = A.shape
    else:
        m, k = A.shape
    n = B.shape[1]
    if B.shape[0] != k:
        shown = f"{A.shape}^T" if transpose_a else f"{A.shape}"
        raise ValueError(f"blas.{name}: shapes {shown} @ {B.shape} -> {C.shape} do not match")
    if C.shape != (m, n):
        C = _matrix(C, m, n, name)
    gemm, _ = _FUNCTIONS[C.dtype]
    # The inputs may be views (a slice of a batch); the output is written in place.
    A, B = np.ascontiguousarray(A), np.ascontiguousarray(B)
    gemm(ROW_MAJOR, TRANS if transpose_a else NO_TRANS, NO_TRANS, m, n, k, alpha,
         _address(A, C.dtype), A.shape[1], _address(B, C.dtype), n, beta, c, n)


def gemm_tn(A: np.ndarray, B: np.ndarray, C: np.ndarray | Fixed, *, alpha: float, beta: float) -> None:
    """C <- alpha A^T B + beta C in place; A `(k, m)`, B `(k, n)`, C `(m, n)` (or `(n,)` if m = 1)."""
    _gemm("gemm_tn", True, A, B, C, alpha, beta)


def gemm_nn(A: np.ndarray, B: np.ndarray, C: np.ndarray | Fixed, *, alpha: float, beta: float) -> None:
    """C <- alpha A B + beta C in place; A `(m, k)`, B `(k, n)`, C `(m, n)` (or `(n,)` if m = 1)."""
    _gemm("gemm_nn", False, A, B, C, alpha, beta)


def axpy(alpha: float, x: np.ndarray | Fixed, y: np.ndarray | Fixed) -> None:
    """y <- y + alpha x in place; x and y of one shape and float dtype."""
    y, y_address = _operand(y)
    x, x_address = _operand(x, y.dtype)
    if x.shape != y.shape:
        raise ValueError(f"blas.axpy: shapes {x.shape} and {y.shape} differ")
    _, function = _FUNCTIONS[y.dtype]
    function(y.size, alpha, x_address, 1, y_address, 1)


__all__ = ["AVAILABLE", "Fixed", "axpy", "gemm_nn", "gemm_tn"]
