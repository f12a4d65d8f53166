"""The compute environment a run's numbers depend on, as a plain dict.

    environment() -> {"numpy": "2.4.6", "blas": "openblas 0.3.31.188.0",
                      "blas_architecture": "SkylakeX", "blas_threading_layer": "pthreads",
                      "blas_threads": 2, "fused_updates": True}

NumPy hands matrix products to a BLAS library, and the last bits of a product
depend on that library, its version, the CPU kernel it picked (its
"architecture") and how many threads it splits the product over. Measured with
NumPy 2.4.6's OpenBLAS 0.3.31 (SkylakeX kernels, 2 cores): the forward
product of a 784-input layer, (128, 784) @ (784, 800) in float32, differs
between 1 and 2 threads in 80 % of its entries (by up to 5e-5); after one
MNIST epoch of 784-64-10, 58 % of the first layer's weights differ. Products
with 128 to 512 inner terms came out equal. So the train stage's cache key
covers this dict (`mlpspec.pipeline.stage_reads`), the run records it, and a
checkpoint is only resumed under the environment that wrote it.

The BLAS fields come from threadpoolctl (what scikit-learn uses to inspect and
limit these pools). NumPy's own SIMD loops (exp, tanh, ...) are not in the
dict: they follow the CPU, which the BLAS architecture only partly names.
`fused_updates` says whether training calls NumPy's OpenBLAS directly
(`mlpspec.nn.blas`): SGD and momentum steps folded into one GEMM each, and
dense outputs accumulated onto their bias. Both round differently from the
plain NumPy path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import threadpoolctl

from mlpspec.nn import blas


def environment() -> dict[str, Any]:
    """NumPy's version and the loaded BLAS: library and version, CPU kernel, threading, threads.

    With one BLAS loaded (the usual case) each field is a plain value; with
    several, each field is a list in a fixed order; with none, `blas` is "none".
    """
    pools = sorted((info for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"),
                   key=lambda info: (str(info.get("internal_api")), str(info.get("version")),
                                     str(info.get("filepath"))))
    fields = {
        "blas": [f"{info.get('internal_api')} {info.get('version')}" for info in pools],
        "blas_architecture": [info.get("architecture") for info in pools],
        "blas_threading_layer": [info.get("threading_layer") for info in pools],
        "blas_threads": [info.get("num_threads") for info in pools],
    }
    if not pools:
        return {"numpy": np.__version__, "blas": "none"}
    single = len(pools) == 1
    return {"numpy": np.__version__, **{name: values[0] if single else values
                                        for name, values in fields.items()},
            "fused_updates": blas.AVAILABLE}


__all__ = ["environment"]
