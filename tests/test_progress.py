"""The live progress bar shows what the task has: a running accuracy for
classification, none for regression (whose running accuracy is NaN)."""

from __future__ import annotations

import io
import math

from mlpspec.progress import LiveProgress


def bar_text(accuracy: float) -> str:
    """The bar's text after one step, rendered by its own columns."""
    progress = LiveProgress(io.StringIO())
    progress.training_started(epochs=2, first_epoch=1, batches=10, samples=1000)
    progress.step(1, 4, 0.25, accuracy)
    task = progress._live.tasks[0]
    text = " ".join(str(column.render(task)) for column in progress._live.columns
                    if hasattr(column, "text_format"))
    progress.training_finished()
    return text


def test_classification_bar_shows_the_running_accuracy():
    assert "acc 90.00%" in bar_text(0.9)


def test_regression_bar_shows_no_accuracy():
    text = bar_text(math.nan)
    assert "loss 0.2500" in text and "acc" not in text
