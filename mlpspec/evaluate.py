"""Scoring a trained network: accuracy, loss, confusion matrix, per-class figures;
for regression RMSE, MAE and R² per target, in the targets' original units."""

from __future__ import annotations

import numpy as np

from mlpspec.nn.layers import Network
from mlpspec.scoring import output_loss, regression_metrics
from mlpspec.train import build_loss

#: The pictures of each task, in the evaluate entry and the run folder.
PICTURES = {"classification": ("curves.png", "confusion.png", "errors.png"),
            "regression": ("curves.png", "predictions.png", "residuals.png")}


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


def evaluate_run(spec, network: Network, data, history: list[dict], folder) -> dict:
    """The evaluate stage: metrics of both splits, and the pictures, into `folder`.

    Returns `{"test": {...}, "validation": {...}, "class_names": [...],
    "headline": split}`; the split named by `evaluate.split` also gets the
    confusion matrix picture and the grid of misclassified examples.
    """
    from pathlib import Path

    from mlpspec import report
    from mlpspec.nn.losses import probabilities

    folder = Path(folder)
    loss = build_loss(spec, data)
    if data.target_scaling is not None:
        return _evaluate_regression(spec, network, data, history, folder, loss)
    metrics: dict = {"class_names": list(data.class_names), "headline": spec.evaluate.split}
    splits = {"test": (data.x_test, data.y_test), "validation": (data.x_val, data.y_val)}
    outputs = {}
    for split, (X, y) in splits.items():
        if len(X):
            Z = outputs[split] = network.predict(X, spec.evaluate.batch_size)
            metrics[split] = classification_metrics(y, Z.argmax(axis=1), data.classes)
            metrics[split]["loss"] = output_loss(loss, Z, y)
    split = spec.evaluate.split
    report.draw_curves(history, folder / "curves.png", f"{spec.name}: training history")
    X, y = splits[split]
    metrics[split]["misclassified"] = _draw_split(
        X, y, probabilities(outputs[split]), metrics[split], data.class_names, data.sample_shape,
        folder, f"{spec.name}: {split}", spec.evaluate.misclassified)
    return metrics


def _evaluate_regression(spec, network: Network, data, history: list[dict], folder, loss) -> dict:
    """`evaluate_run` for regression: `{"test", "validation", "target_names", "headline"}`,
    each split's `regression_metrics` (original units) and its loss on the scaled targets;
    the headline split gets `predictions.png` and `residuals.png`."""
    from mlpspec import report

    metrics: dict = {"target_names": list(data.target_names), "headline": spec.evaluate.split}
    predictions = {}
    for split, X, y in (("test", data.x_test, data.y_test), ("validation", data.x_val, data.y_val)):
        if len(X):
            Z = network.predict(X, spec.evaluate.batch_size)
            predictions[split] = data.target_scaling.invert(Z)
            metrics[split] = regression_metrics(y, predictions[split], data.target_names)
            metrics[split]["loss"] = output_loss(loss, Z, y, data.target_scaling)
    split = spec.evaluate.split
    report.draw_curves(history, folder / "curves.png", f"{spec.name}: training history")
    y = data.y_test if split == "test" else data.y_val
    _draw_regression(y, predictions[split], data.target_names, metrics[split], folder,
                     f"{spec.name}: {split}")
    return metrics


def _draw_regression(y: np.ndarray, predicted: np.ndarray, names, metrics: dict, folder,
                     title: str) -> None:
    from mlpspec import report

    headline = f"RMSE {metrics['rmse']:.4g}, R² {metrics['r2']:.4f}"
    report.draw_predictions(y, predicted, names, folder / "predictions.png", f"{title}: {headline}")
    report.draw_residuals(y, predicted, names, folder / "residuals.png", f"{title}: residuals")


def evaluate_regression_file(model, samples: np.ndarray, targets: np.ndarray, folder,
                             title: str) -> dict:
    """Score a loaded regression model file on raw samples and targets `(n, k)` in their
    original units; writes `metrics.json`, `predictions.png` and `residuals.png`."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    predicted = model.predict(samples).reshape(len(targets), -1)
    metrics = regression_metrics(targets, predicted, model.target_names)
    _draw_regression(targets, predicted, model.target_names, metrics, folder, title)
    result = {"test": metrics, "target_names": list(model.target_names), "headline": "test"}
    (folder / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


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

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    P = model.predict_proba(images)
    metrics = classification_metrics(labels, P.argmax(axis=1), len(class_names))
    true_p = np.clip(P[np.arange(len(labels)), labels], 1e-12, 1.0)
    metrics["loss"] = float(-np.mean(np.log(true_p)))
    metrics["misclassified"] = _draw_split(images, labels, P, metrics, class_names,
                                           images.shape[1:], folder, title, misclassified)
    result = {"test": metrics, "class_names": list(class_names), "headline": "test"}
    (folder / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def _draw_split(X: np.ndarray, y: np.ndarray, P: np.ndarray, metrics: dict, class_names,
                sample_shape: tuple[int, ...], folder, title: str, limit: int) -> list[int]:
    """Draw `confusion.png` and `errors.png` for one split; the misclassified indices shown.

    `X` are the samples as stored (flat or not), `P (n, classes)` the
    predicted probabilities; the most confident mistakes come first, the ones
    most worth a look.
    """
    from mlpspec import report

    predicted = P.argmax(axis=1)
    confidence = P[np.arange(len(y)), predicted]
    wrong = np.flatnonzero(predicted != y)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    report.draw_confusion(np.array(metrics["confusion_matrix"]), class_names,
                          folder / "confusion.png", f"{title}: accuracy {metrics['accuracy']:.2%}")
    shape = (tuple(sample_shape) if len(sample_shape) == 2
             else _square(X[0].size) or (1, X[0].size))  # a strip when not an image
    report.draw_errors(X[shown].reshape((len(shown), *shape)), y[shown], predicted[shown],
                       confidence[shown], class_names, folder / "errors.png",
                       f"{title}: {len(shown)} of {len(wrong)} misclassified, most confident first")
    return shown.tolist()


def _square(features: int) -> tuple[int, int] | None:
    side = int(round(features ** 0.5))
    return (side, side) if side * side == features else None
