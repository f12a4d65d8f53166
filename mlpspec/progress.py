"""What a run shows while it works: live bars on a terminal, plain lines elsewhere.

The pipeline reports through one `Progress` object; the CLI picks the kind:
`LiveProgress` (rich, on a terminal), `PlainProgress` (one line per stage and
epoch, for logs and pipes) or `Progress` itself (silent, for `--quiet`).
All output goes to stderr, so `--json` keeps stdout clean.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


class Progress:
    """Silent progress; the base the others override."""

    def stage_started(self, stage: str, detail: str = "") -> None:
        pass

    def stage_finished(self, stage: str, status: str, seconds: float) -> None:
        pass

    def training_started(self, epochs: int, first_epoch: int, batches: int, samples: int) -> None:
        pass

    def step(self, epoch: int, batch: int, loss: float, accuracy: float) -> None:
        pass

    def epoch(self, record) -> None:
        pass

    def training_finished(self) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def epoch_line(record, epochs: int) -> str:
    """One epoch as a line: losses, accuracies (regression: validation RMSE and R²),
    learning rate, seconds."""
    regression = math.isnan(record.train_accuracy) and not math.isnan(record.train_loss)
    validation = ""
    if not math.isnan(record.val_loss):
        figures = (f"rmse {record.val_rmse:.4g} r2 {record.val_r2:.4f}" if regression
                   else f"acc {record.val_accuracy:.2%}")
        validation = f"  val loss {record.val_loss:.4f} {figures}"
    train = "" if regression else f" acc {record.train_accuracy:.2%}"
    return (f"epoch {record.epoch:>{len(str(epochs))}}/{epochs}  loss {record.train_loss:.4f}"
            f"{train}{validation}  lr {record.learning_rate:.3g}  {record.seconds:.2f}s")


class PlainProgress(Progress):
    """A line per stage and per epoch."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.epochs = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def stage_started(self, stage: str, detail: str = "") -> None:
        self._print(f"[{stage}] running{': ' + detail if detail else ''}")

    def stage_finished(self, stage: str, status: str, seconds: float) -> None:
        self._print(f"[{stage}] {status} ({seconds:.2f} s)")

    def training_started(self, epochs: int, first_epoch: int, batches: int, samples: int) -> None:
        self.epochs = epochs
        if first_epoch > 1:
            self._print(f"[train] resuming from the checkpoint after epoch {first_epoch - 1}")

    def epoch(self, record) -> None:
        self._print(f"[train] {epoch_line(record, self.epochs)}")

    def message(self, text: str) -> None:
        self._print(text)


class LiveProgress(PlainProgress):
    """Plain lines for stages and epochs, plus a live bar while training (rich)."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream)
        self._live = None
        self._task = None
        self._samples_done = 0
        self._started = 0.0

    def training_started(self, epochs: int, first_epoch: int, batches: int, samples: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress as Bar, TextColumn

        super().training_started(epochs, first_epoch, batches, samples)
        self._batches, self._batch_size = batches, samples / max(batches, 1)
        self._live = Bar(TextColumn("[bold]train[/] epoch {task.fields[epoch]}/" + str(epochs)),
                         BarColumn(), TextColumn("batch {task.completed:.0f}/{task.total:.0f}"),
                         TextColumn("loss {task.fields[loss]:.4f}{task.fields[acc]}"),
                         TextColumn("{task.fields[rate]:,.0f} samples/s"),
                         console=Console(file=self.stream), transient=True)
        self._live.start()
        self._task = self._live.add_task("train", total=batches, epoch=first_epoch, loss=0.0,
                                         acc="", rate=0.0)
        self._started, self._samples_done = time.perf_counter(), 0

    def step(self, epoch: int, batch: int, loss: float, accuracy: float) -> None:
        if self._live is None:
            return
        self._samples_done += self._batch_size
        rate = self._samples_done / max(time.perf_counter() - self._started, 1e-9)
        self._live.update(self._task, completed=batch, epoch=epoch, loss=loss,
                          # regression has no running accuracy (NaN): show none
                          acc="" if math.isnan(accuracy) else f" acc {accuracy:.2%}", rate=rate)

    def epoch(self, record) -> None:
        if self._live is not None:
            self._live.console.print(f"[train] {epoch_line(record, self.epochs)}",
                                     markup=False, highlight=False)
        else:
            super().epoch(record)

    def training_finished(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
