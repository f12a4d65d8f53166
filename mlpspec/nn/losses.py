"""Losses: `loss(Z, T) -> (value, dZ)` on the network outputs Z `(n_samples, k)`.

`value` is a Python float, the mean over the batch; `dZ` `(n_samples, k)` is its
gradient with respect to Z, in Z's dtype. Targets T are integer labels
`(n_samples,)` or one-hot / probability rows `(n_samples, k)`. Constructors
take exactly the keys of the loss's spec class; the names below are declared
in `mlpspec.registry`.

    softmax_cross_entropy.v1(label_smoothing=0.0)
        Softmax fused with cross-entropy, computed through log-sum-exp:
            value = -mean_i sum_k T'_ik log softmax(Z_i)_k
            dZ    = (softmax(Z) - T') / n
        with smoothed targets T' = (1 - eps) T + eps / k.
    mse.v1()
        The tutorial's quadratic cost on raw outputs, one-hot targets only:
            value = mean_i 0.5 * sum_k (Z_ik - T_ik)^2
            dZ    = (Z - T) / n
"""

from __future__ import annotations

import numpy as np


def probabilities(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of Z `(n_samples, k)`: class probabilities, rows sum to 1."""
    P = Z - Z.max(axis=1, keepdims=True)
    np.exp(P, out=P)
    P /= P.sum(axis=1, keepdims=True)
    return P


def _one_hot_like(T: np.ndarray, Z: np.ndarray, loss: object) -> np.ndarray:
    if T.shape != Z.shape:
        raise ValueError(f"{type(loss).__name__}: targets of shape {T.shape} do not match "
                         f"outputs {Z.shape}")
    return T if T.dtype == Z.dtype else T.astype(Z.dtype)


class SoftmaxCrossEntropy:
    """Fused softmax + cross-entropy, mean over the batch, optional label smoothing."""

    def __init__(self, *, label_smoothing: float):
        self.label_smoothing = float(label_smoothing)

    def __call__(self, Z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        n, k = Z.shape
        eps = self.label_smoothing
        # log softmax(Z) = Z - log_norm, log_norm = max + log(sum(exp(Z - max)))
        top = Z.max(axis=1, keepdims=True)
        dZ = np.subtract(Z, top)
        np.exp(dZ, out=dZ)
        total = np.add.reduce(dZ, axis=1, keepdims=True)
        dZ /= total  # softmax(Z)
        log_norm = np.log(total, out=total)
        log_norm += top
        if T.ndim == 1:
            if not np.issubdtype(T.dtype, np.integer):
                raise ValueError(f"{type(self).__name__}: label targets must be integers, got {T.dtype}")
            flat = np.arange(0, n * k, k)
            flat += T
            # -mean log p[label] = mean(log_norm - Z[label])
            value = (1.0 - eps) * float(np.add.reduce(log_norm[:, 0] - Z.take(flat))) / n
            dZ.ravel()[flat] -= 1.0 - eps
        else:
            T = _one_hot_like(T, Z, self)
            value = (1.0 - eps) * float(np.vdot(T, log_norm - Z)) / n
            dZ -= (1.0 - eps) * T
        if eps:
            # -mean (eps / k) sum_k log p = (eps / k) mean sum_k (log_norm - Z)
            value += eps / k * float(k * np.sum(log_norm) - np.sum(Z)) / n
            dZ -= eps / k
        dZ *= 1.0 / n
        return value, dZ


class MeanSquaredError:
    """0.5 * squared error summed over outputs, mean over the batch; one-hot targets."""

    def __call__(self, Z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        n = Z.shape[0]
        T = _one_hot_like(T, Z, self)
        dZ = Z - T
        value = 0.5 * float(np.vdot(dZ, dZ)) / n
        dZ /= n
        return value, dZ

