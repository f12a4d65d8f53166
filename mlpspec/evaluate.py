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


def evaluate_run(spec, network: Network, data, history: list[dict], folder) -> dict:
    """The evaluate stage: metrics of both splits, and the pictures, into `folder`.

    Returns `{"test": {...}, "validation": {...}, "class_names": [...],
    "headline": split}`; the split named by `evaluate.split` also gets the
    confusion matrix picture and the grid of misclassified examples.
    """
    from pathlib import Path

    from mlpspec import report
    from mlpspec.nn.losses import probabilities
    from mlpspec.train import build_loss

    folder = Path(folder)
    loss = build_loss(spec)
    batch_size = spec.evaluate.batch_size
    metrics: dict = {"class_names": list(data.class_names), "headline": spec.evaluate.split}
    splits = {"test": (data.x_test, data.y_test), "validation": (data.x_val, data.y_val)}
    for split, (X, y) in splits.items():
        if len(X):
            metrics[split] = evaluate(network, loss, X, y, data.classes, batch_size)
    split = spec.evaluate.split
    X, y = splits[split]
    title = f"{spec.name}: {split} accuracy {metrics[split]['accuracy']:.2%}"
    report.draw_curves(history, folder / "curves.png", f"{spec.name}: training history")
    report.draw_confusion(np.array(metrics[split]["confusion_matrix"]), data.class_names,
                          folder / "confusion.png", title)
    P = probabilities(network.predict(X, batch_size))
    predicted = P.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    # The most confident mistakes first: the ones most worth a look.
    wrong = wrong[np.argsort(-P[wrong, predicted[wrong]], kind="stable")][:spec.evaluate.misclassified]
    shape = (data.sample_shape if len(data.sample_shape) == 2
             else _square(X.shape[1]) or (1, X.shape[1]))  # a strip when not an image
    images = X[wrong].reshape((len(wrong), *shape))
    report.draw_errors(images, y[wrong], predicted[wrong], P[wrong, predicted[wrong]],
                       data.class_names, folder / "errors.png",
                       f"{spec.name}: {len(wrong)} of {int((predicted != y).sum())} "
                       f"misclassified {split} samples, most confident first")
    metrics[split]["misclassified"] = wrong.tolist()
    return metrics


def _square(features: int) -> tuple[int, int] | None:
    side = int(round(features ** 0.5))
    return (side, side) if side * side == features else None


def evaluate_model_file(model, images: np.ndarray, labels: np.ndarray, class_names, folder,
                        title: str, misclassified: int = 36) -> dict:
    """Score a loaded model file (`mlpspec.infer.Model`) on raw images; write pictures.

    The model applies its own stored preprocessing to the raw `images`
    `(n, *sample_shape)`. The loss reported is the log loss of its
    probabilities. Writes `metrics.json`, `confusion.png` and `errors.png`
    into `folder`.
    """
    import json
    from pathlib import Path

    from mlpspec import report

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes = len(class_names)
    P = model.predict_proba(images)
    predicted = P.argmax(axis=1)
    metrics = classification_metrics(labels, predicted, classes)
    true_p = np.clip(P[np.arange(len(labels)), labels], 1e-12, 1.0)
    metrics["loss"] = float(-np.mean(np.log(true_p)))
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-P[wrong, predicted[wrong]], kind="stable")][:misclassified]
    metrics["misclassified"] = wrong.tolist()
    result = {"test": metrics, "class_names": list(class_names), "headline": "test"}
    report.draw_confusion(np.array(metrics["confusion_matrix"]), class_names,
                          folder / "confusion.png", f"{title}: accuracy {metrics['accuracy']:.2%}")
    shape = images.shape[1:] if images.ndim == 3 else (_square(images[0].size) or (1, images[0].size))
    report.draw_errors(images[wrong].reshape((len(wrong), *shape)), labels[wrong], predicted[wrong],
                       P[wrong, predicted[wrong]], class_names, folder / "errors.png",
                       f"{title}: {len(wrong)} of {int((predicted != labels).sum())} misclassified, "
                       f"most confident first")
    (folder / "metrics.json").write_text(json.dumps(result, indent=1))
    return result
