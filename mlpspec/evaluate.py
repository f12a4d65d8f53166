"""Scoring a trained network: accuracy, loss, confusion matrix, per-class figures."""

from __future__ import annotations

import numpy as np

from mlpspec.data.prepare import one_hot
from mlpspec.nn.layers import Network


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """`(classes, classes)` counts; row = true class, column = predicted class."""
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(classes, classes)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> dict:
    """Accuracy, the confusion matrix and per-class precision, recall and F1.

    A class never predicted has precision 0; one never present has recall 0
    (scikit-learn's `zero_division=0`).
    """
    matrix = confusion_matrix(y_true, y_pred, classes)
    hits = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(classes), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros(classes), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(classes), where=both > 0)
    return {
        "accuracy": float(hits.sum() / max(len(y_true), 1)),
        "samples": int(len(y_true)),
        "confusion_matrix": matrix.tolist(),
        "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()},
    }


def evaluate(network: Network, loss, X: np.ndarray, y: np.ndarray, classes: int,
             batch_size: int = 10000) -> dict:
    """Every metric of `network` on `X (n, features)` with labels `y (n,)`."""
    Z = network.predict(X, batch_size)
    value, _ = loss(Z, one_hot(y, classes, Z.dtype))  # every loss takes one-hot targets
    metrics = classification_metrics(y, Z.argmax(axis=1), classes)
    metrics["loss"] = float(value)
    return metrics
