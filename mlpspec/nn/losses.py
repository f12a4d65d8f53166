"""Losses: `loss(Z, T) -> (value, dZ)` on the network outputs Z `(n_samples, k)`.

`value` is a Python float, the mean over the batch; `dZ` `(n_samples, k)` is its
gradient with respect to Z, in Z's dtype. Targets T are integer labels
`(n_samples,)` or one-hot / probability rows `(n_samples, k)` for
classification, real-valued rows `(n_samples, k)` for regression.
Constructors take exactly the keys of the loss's spec class; the names below
are declared in `mlpspec.registry`.

    softmax_cross_entropy.v1(label_smoothing=0.0, balanced=False, class_weights=())
        Softmax fused with cross-entropy, computed through log-sum-exp:
            value = -mean_i w_i sum_k T'_ik log softmax(Z_i)_k
            dZ    = w_i (softmax(Z) - T') / n
        with smoothed targets T' = (1 - eps) T + eps / k and sample weights
        w_i = class_weights[label_i] (1 without class weights; `balanced`
        weights n / (k * count_c) are set from the training labels by
        `balance`). The mean divides by n, not by sum(w), so a batch's
        value does not depend on which other classes it holds.
    mse.v1()
        The tutorial's quadratic cost on raw outputs (one-hot rows or real targets):
            value = mean_i 0.5 * sum_k (Z_ik - T_ik)^2
            dZ    = (Z - T) / n
    mae.v1()
        Absolute error:  value = mean_i sum_k |Z_ik - T_ik|,  dZ = sign(Z - T) / n
    huber.v1(delta=1.0)
        Quadratic within delta, linear beyond (per element r = Z - T):
            h(r)  = 0.5 r^2 if |r| <= delta else delta (|r| - 0.5 delta)
            value = mean_i sum_k h(r_ik),  dZ = clip(r, -delta, delta) / n
        (for delta beyond every |r| this is mse.v1).
"""

from __future__ import annotations

import numpy as np


def probabilities(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of Z `(n_samples, k)`: class probabilities, rows sum to 1."""
    P = Z - _row_max(Z)
    np.exp(P, out=P)
    P /= P.sum(axis=1, keepdims=True)
    return P


def _row_max(Z: np.ndarray) -> np.ndarray:
    """`Z.max(axis=1, keepdims=True)`, the same values (a maximum does not round).

    NumPy reduces a short last axis row by row: 6.7 us for (128, 10) float32,
    against 2.3 us for the maximum down the columns of a transposed copy,
    which runs over all rows at once.
    """
    if Z.shape[1] < 64:
        return np.ascontiguousarray(Z.T).max(axis=0)[:, None]
    return Z.max(axis=1, keepdims=True)


def _one_hot_like(T: np.ndarray, Z: np.ndarray, loss: object) -> np.ndarray:
    if T.shape != Z.shape:
        raise ValueError(f"{type(loss).__name__}: targets of shape {T.shape} do not match "
                         f"outputs {Z.shape}")
    return T if T.dtype == Z.dtype else T.astype(Z.dtype)


class SoftmaxCrossEntropy:
    """Fused softmax + cross-entropy, mean over the batch, optional label smoothing."""

    def __init__(self, *, label_smoothing: float, balanced: bool = False,
                 class_weights: tuple[float, ...] = ()):
        self.label_smoothing = float(label_smoothing)
        self.balanced = bool(balanced)
        #: `(k,)` float64 weight per class, or None (every sample counts once).
        self.weights = np.array(class_weights, dtype=np.float64) if len(class_weights) else None

    def balance(self, counts: np.ndarray) -> None:
        """Set `balanced` weights from the training samples per class `(k,)`:
        `n / (k * count_c)` (scikit-learn's), a class never seen gets weight 0."""
        counts = np.asarray(counts, dtype=np.float64)
        self.weights = np.divide(counts.sum(), len(counts) * counts, out=np.zeros(len(counts)),
                                 where=counts > 0)

    def __call__(self, Z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        n, k = Z.shape
        eps = self.label_smoothing
        if self.balanced and self.weights is None:
            raise ValueError("balanced class weights need the class counts: call balance() first")
        if self.weights is not None:
            return self._weighted(Z, T)
        # log softmax(Z) = Z - log_norm, log_norm = max + log(sum(exp(Z - max)))
        top = _row_max(Z)
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

    def _weighted(self, Z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss with per-class weights: each sample's term times its class's weight."""
        n, k = Z.shape
        eps = self.label_smoothing
        if len(self.weights) != k:
            raise ValueError(f"{type(self).__name__}: {len(self.weights)} class weights for "
                             f"{k} outputs")
        if T.ndim == 1:
            if not np.issubdtype(T.dtype, np.integer):
                raise ValueError(f"{type(self).__name__}: label targets must be integers, got {T.dtype}")
            T = np.eye(k, dtype=Z.dtype)[T]
        else:
            T = _one_hot_like(T, Z, self)
        w = (T @ self.weights.astype(Z.dtype))[:, None]  # (n, 1): a one-hot row picks its weight
        top = _row_max(Z)
        P = np.exp(Z - top)
        total = P.sum(axis=1, keepdims=True)
        P /= total
        log_p = Z - (np.log(total) + top)
        smoothed = (1.0 - eps) * T + eps / k
        value = -float(np.sum(w * smoothed * log_p)) / n
        dZ = P - smoothed
        dZ *= w
        dZ *= 1.0 / n
        return value, dZ.astype(Z.dtype, copy=False)


class MeanSquaredError:
    """0.5 * squared error summed over outputs, mean over the batch (one-hot or real targets)."""

    def __call__(self, Z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        n = Z.shape[0]
        T = _one_hot_like(T, Z, self)
        dZ = Z - T
        value = 0.5 * float(np.vdot(dZ, dZ)) / n
        dZ /= n
        return value, dZ



class MeanAbsoluteError:
    """Absolute error summed over outputs, mean over the batch; real-valued targets."""

    def __call__(self, Z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        n = Z.shape[0]
        R = Z - _one_hot_like(T, Z, self)
        value = float(np.abs(R).sum()) / n
        dZ = np.sign(R, out=R)
        dZ /= n
        return value, dZ


class Huber:
    """Huber loss (quadratic within `delta`, linear beyond), summed over outputs, mean over the batch."""

    def __init__(self, *, delta: float):
        self.delta = float(delta)

    def __call__(self, Z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        n, delta = Z.shape[0], self.delta
        R = Z - _one_hot_like(T, Z, self)
        A = np.abs(R)
        inside = A <= delta
        value = float(np.sum(np.where(inside, 0.5 * R * R, delta * (A - 0.5 * delta)))) / n
        dZ = np.clip(R, -delta, delta, out=R)
        dZ /= n
        return value, dZ
