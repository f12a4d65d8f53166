"""Weight initializers: small functions `f(rng, n_in, n_out, dtype, std) -> W`.

Every initializer returns a fresh `W` of shape `(n_in, n_out)` in `dtype`,
drawn from the `numpy.random.Generator` it is given. `std` is used only by
"normal"; the others derive their scale from the fan-in / fan-out:

    normal          N(0, std^2)                      (the tutorial uses std 0.01)
    he_normal       N(0, 2 / n_in)                   (He et al. 2015, for ReLU)
    he_uniform      U(-a, a),  a = sqrt(6 / n_in)
    glorot_normal   N(0, 2 / (n_in + n_out))         (plain, not truncated)
    glorot_uniform  U(-a, a),  a = sqrt(6 / (n_in + n_out))

Biases are always initialised to zero by the layer itself. The names a
spec uses for them are declared in `mlpspec.registry.INITIALIZERS`.
"""

from __future__ import annotations

from collections.abc import Callable

import math

import numpy as np

Initializer = Callable[[np.random.Generator, int, int, np.dtype, float], np.ndarray]


def _normal(rng: np.random.Generator, shape: tuple[int, int], scale: float, dtype) -> np.ndarray:
    W = rng.standard_normal(shape, dtype=dtype)
    W *= scale
    return W


def _uniform(rng: np.random.Generator, shape: tuple[int, int], limit: float, dtype) -> np.ndarray:
    W = rng.random(shape, dtype=dtype)  # U[0, 1)
    W *= 2.0 * limit
    W -= limit
    return W


def normal(rng, n_in, n_out, dtype, std=0.01):
    return _normal(rng, (n_in, n_out), std, dtype)


def he_normal(rng, n_in, n_out, dtype, std=0.01):
    return _normal(rng, (n_in, n_out), math.sqrt(2.0 / n_in), dtype)


def he_uniform(rng, n_in, n_out, dtype, std=0.01):
    return _uniform(rng, (n_in, n_out), math.sqrt(6.0 / n_in), dtype)


def glorot_normal(rng, n_in, n_out, dtype, std=0.01):
    return _normal(rng, (n_in, n_out), math.sqrt(2.0 / (n_in + n_out)), dtype)


def glorot_uniform(rng, n_in, n_out, dtype, std=0.01):
    return _uniform(rng, (n_in, n_out), math.sqrt(6.0 / (n_in + n_out)), dtype)

