"""The pictures and tables of a run: curves, confusion matrix, misclassified examples.

matplotlib (Agg backend, no display needed) is imported only when a picture
is drawn, so commands that draw nothing start fast.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "learning_rate", "seconds")
REGRESSION_COLUMNS = ("epoch", "train_loss", "val_loss", "val_rmse", "val_mae", "val_r2",
                      "learning_rate", "seconds")


def history_csv(history: Sequence[dict]) -> str:
    """The per-epoch history as CSV text (one row per epoch; empty cells for no validation)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    regression = bool(history) and "val_r2" in history[0] and _nan(history[0]["train_accuracy"])
    columns = REGRESSION_COLUMNS if regression else HISTORY_COLUMNS
    writer.writerow(columns)
    for record in history:
        writer.writerow(["" if _nan(v) else v for v in (record[c] for c in columns)])
    return out.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def draw_curves(history: Sequence[dict], path: Path, title: str) -> None:
    """Loss and accuracy (regression: validation R²) per epoch, training and validation."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    regression = bool(history) and "val_r2" in history[0] and _nan(history[0]["train_accuracy"])
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    second = ("r2", "R² (validation)") if regression else ("accuracy", "accuracy")
    for axis, metric, label in ((loss_axis, "loss", "loss"), (accuracy_axis, *second)):
        if f"train_{metric}" in history[0]:
            axis.plot(epochs, [r[f"train_{metric}"] for r in history], marker="o", ms=3,
                      label="training")
        validation = [r[f"val_{metric}"] for r in history]
        if not all(math.isnan(v) for v in validation):
            axis.plot(epochs, validation, marker="o", ms=3, label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    if all(r["train_loss"] > 0 for r in history):
        loss_axis.set_yscale("log")
    if not regression:
        accuracy_axis.yaxis.set_major_formatter(lambda value, _: f"{value:.1%}")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def draw_predictions(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str],
                     path: Path, title: str) -> None:
    """Predicted against actual values, one panel per target, with the diagonal y = x."""

    def panel(axis, j: int, name: str) -> None:
        axis.scatter(y_true[:, j], y_pred[:, j], s=8, alpha=0.6)
        both = np.concatenate([y_true[:, j], y_pred[:, j]])
        low, high = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        axis.plot([low, high], [low, high], color="black", lw=1, label="predicted = actual")
        axis.set_xlabel(f"actual {name}")
        axis.set_ylabel(f"predicted {name}")
        axis.legend(loc="upper left")

    _target_panels(names, panel, 4.5, path, title)


def draw_residuals(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str],
                   path: Path, title: str) -> None:
    """Residuals (actual - predicted) against predicted values, one panel per target."""

    def panel(axis, j: int, name: str) -> None:
        axis.scatter(y_pred[:, j], y_true[:, j] - y_pred[:, j], s=8, alpha=0.6)
        axis.axhline(0.0, color="black", lw=1)
        axis.set_xlabel(f"predicted {name}")
        axis.set_ylabel("residual (actual - predicted)")

    _target_panels(names, panel, 4.0, path, title)


def _target_panels(names: Sequence[str], panel, height: float, path: Path, title: str) -> None:
    """One gridded panel per target, side by side, drawn by `panel(axis, j, short name)`."""
    plt = _pyplot()
    k = len(names)
    figure, axes = plt.subplots(1, k, figsize=(4.5 * k, height), dpi=100, squeeze=False)
    for j, axis in enumerate(axes[0]):
        panel(axis, j, _short(str(names[j])))
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def draw_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> None:
    """The confusion matrix, counts in every cell, rows = true class."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    classes = len(matrix)
    size = max(5.0, 0.55 * classes + 2)
    figure, axis = plt.subplots(figsize=(size, size * 0.9), dpi=100)
    # Log colours so the off-diagonal errors are visible next to the big diagonal.
    image = axis.imshow(np.log1p(matrix), cmap="Blues")
    threshold = np.log1p(matrix).max() / 2
    for true in range(classes):
        for predicted in range(classes):
            count = matrix[true, predicted]
            if count:
                axis.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                          color="white" if np.log1p(count) > threshold else "black")
    labels = [_short(name) for name in class_names]
    axis.set_xticks(range(classes), labels, rotation=45, ha="right")
    axis.set_yticks(range(classes), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046, label="log(1 + count)")
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def draw_errors(images: np.ndarray, true: Sequence[int], predicted: Sequence[int],
                confidence: Sequence[float], class_names: Sequence[str], path: Path,
                title: str) -> None:
    """A grid of misclassified images `(n, rows, cols)` with true and predicted labels."""
    plt = _pyplot()
    count = len(images)
    columns = max(1, min(9, count))
    rows = max(1, math.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.75 * rows + 0.5),
                                dpi=100, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        axis.imshow(images[index], cmap="gray_r")
        axis.set_title(f"true {_short(class_names[true[index]])}\n"
                       f"pred {_short(class_names[predicted[index]])} {confidence[index]:.0%}",
                       fontsize=7, color="firebrick")
    if count == 0:
        axes.flat[0].text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def _short(name: str) -> str:
    return name if len(name) <= 11 else name[:10] + "…"
