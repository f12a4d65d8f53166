"""The state of training after a finished epoch, and how it saves to a folder.

    checkpoint.save(folder)                 # atomic: the old checkpoint or the new
    checkpoint = Checkpoint.load(folder)    # None when there is none (or it is damaged)

Folder layout: `state.json` (epoch, step, history, generator states, early
stopping state, seconds, and the names of the arrays in each group) and one
sub-folder of `<name>.npy` files per array group: `network/`, `optimizer/`,
`averaged/` and, when early stopping keeps the best epoch, `best/`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import numpy as np

from mlpspec import atomic
from mlpspec.files import load_arrays, save_arrays


@attrs.frozen
class EpochRecord:
    """One row of the training history; validation figures are NaN without a validation set.

    Accuracies are NaN for regression, the regression figures (validation
    RMSE, MAE and R², means over the targets in their original units) NaN
    for classification.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float
    val_rmse: float = math.nan
    val_mae: float = math.nan
    val_r2: float = math.nan


@attrs.define
class Checkpoint:
    """Everything the loop needs to continue after a finished epoch, bit for bit.

    Arrays are copies (the live ones keep changing); generator states are the
    `bit_generator.state` dicts of the shuffle and dropout generators (the
    augmentation's generators are derived from the epoch number, so need no
    state). `averaged` holds the running weight sums of `[train.averaging]`
    (empty until its first epoch).
    """

    epoch: int
    step: int
    history: list[EpochRecord]
    network: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    shuffle_rng: dict
    dropout_rngs: list[dict]
    best_score: float
    best_epoch: int
    best_network: dict[str, np.ndarray] | None
    waited: int
    seconds: float
    averaged: dict[str, np.ndarray] = attrs.Factory(dict)

    def save(self, folder: Path) -> None:
        """Write the checkpoint to `folder`, replacing an earlier one atomically."""
        folder = Path(folder)
        groups = {"network": self.network, "optimizer": self.optimizer, "averaged": self.averaged,
                  "best": self.best_network}
        state = {
            "epoch": self.epoch, "step": self.step,
            "history": [attrs.asdict(r) for r in self.history],
            "shuffle_rng": self.shuffle_rng, "dropout_rngs": self.dropout_rngs,
            # repr keeps -inf (no best epoch yet) exact; JSON has no infinities.
            "best_score": repr(self.best_score), "best_epoch": self.best_epoch,
            "waited": self.waited, "seconds": self.seconds,
            "arrays": {group: (list(arrays) if arrays is not None else None)
                       for group, arrays in groups.items()},
        }
        with atomic.staging_folder(folder) as staging:
            for group, arrays in groups.items():
                if arrays is not None:
                    save_arrays(staging / group, arrays)
            (staging / "state.json").write_text(json.dumps(state))
            atomic.swap_in(staging, folder)

    @classmethod
    def load(cls, folder: Path) -> Checkpoint | None:
        """The checkpoint saved in `folder`, or None; a damaged one is removed."""
        folder = Path(folder)
        atomic.tidy(folder.parent, folder.name)  # restores one a kill left set aside
        state_file = folder / "state.json"
        if not state_file.exists():
            return None
        try:
            state = json.loads(state_file.read_text())
            arrays = {group: (load_arrays(folder / group, tuple(names)) if names is not None else None)
                      for group, names in state["arrays"].items()}
            history = [EpochRecord(**record) for record in state["history"]]
            return cls(state["epoch"], state["step"], history, arrays["network"],
                       arrays["optimizer"], state["shuffle_rng"], state["dropout_rngs"],
                       float(state["best_score"]), state["best_epoch"], arrays.get("best"),
                       state["waited"], state["seconds"], arrays["averaged"])
        except (OSError, ValueError, KeyError, TypeError):
            # A damaged checkpoint only costs the time to train again.
            atomic.remove(folder)
            return None
