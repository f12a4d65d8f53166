"""The loss of network outputs against their targets, and the regression metrics.

Shared by the training loop (the validation figures after every epoch) and the
evaluate stage, so both report the same number for the same outputs.
"""

from __future__ import annotations

import numpy as np

from mlpspec.data.prepare import Scaling, one_hot


def output_loss(loss, Z: np.ndarray, y: np.ndarray, target_scaling: Scaling | None = None) -> float:
    """Mean `loss` of outputs `Z (n, outputs)` against labels `y (n,)` or, for
    regression, raw targets `y (n, k)` that `target_scaling` maps to what the
    network was trained to output.

    Every classification loss takes one-hot targets, so this works for each of them.
    """
    if target_scaling is not None:
        value, _ = loss(Z, target_scaling.apply(y, Z.dtype))
    else:
        value, _ = loss(Z, one_hot(y, Z.shape[1], Z.dtype))
    return float(value)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, names) -> dict:
    """RMSE, MAE and R² of predictions `y_pred (n, k)` against `y_true (n, k)`, in their units.

    `{"rmse", "mae", "r2"}` are the means over the k targets, `per_target`
    holds each target's figures under its name; R² is `1 - SS_res / SS_tot`
    (scikit-learn's `r2_score`); a target constant over the samples has no
    R², reported as NaN.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    errors = np.asarray(y_pred, dtype=np.float64) - y_true
    rmse = np.sqrt(np.mean(errors ** 2, axis=0))
    mae = np.mean(np.abs(errors), axis=0)
    total = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    residual = np.sum(errors ** 2, axis=0)
    r2 = np.divide(residual, total, out=np.full(len(total), np.nan), where=total > 0)
    r2 = 1.0 - r2
    return {
        "rmse": float(np.mean(rmse)), "mae": float(np.mean(mae)), "r2": float(np.mean(r2)),
        "samples": int(len(y_true)),
        "per_target": {str(name): {"rmse": float(a), "mae": float(b), "r2": float(c)}
                       for name, a, b, c in zip(names, rmse, mae, r2)},
    }
