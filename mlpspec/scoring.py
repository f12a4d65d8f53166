"""The loss of network outputs against integer labels.

Shared by the training loop (the validation loss after every epoch) and the
evaluate stage, so both report the same number for the same outputs.
"""

from __future__ import annotations

import numpy as np

from mlpspec.data.prepare import one_hot


def output_loss(loss, Z: np.ndarray, y: np.ndarray) -> float:
    """Mean `loss` of outputs `Z (n, classes)` against labels `y (n,)`.

    Every loss takes one-hot targets, so this works for each of them.
    """
    value, _ = loss(Z, one_hot(y, Z.shape[1], Z.dtype))
    return float(value)
