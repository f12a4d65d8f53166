"""Regularisers the training loop applies around `Optimizer.step`.

All act in place on plain lists of arrays. "Weights" means the weight
matrices only (`Network.weights()`: dense W), never biases or BatchNorm.

    add_l2_gradient   before the step: dW += (l2 / batch_size) W
                      (the tutorial's L2: cost + (l2 / 2n) sum ||W||^2,
                      `l2_penalty` gives that cost term for reporting)
    decay_weights     decoupled weight decay, any optimizer: W -= lr wd W
    clip_grad_norm    before the step: scale all grads so their global L2
                      norm is at most max_norm; returns the norm before clipping
    apply_max_norm    after the step: each column of W `(n_in, n_out)` (one
                      unit's incoming weights) is rescaled to L2 norm <= c
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def l2_penalty(weights: Sequence[np.ndarray], l2: float, batch_size: int) -> float:
    """(l2 / (2 batch_size)) * sum of squared weights, the cost whose gradient add_l2_gradient adds."""
    return l2 / (2.0 * batch_size) * sum(float(np.vdot(W, W)) for W in weights)


def add_l2_gradient(
    weights: Sequence[np.ndarray], grads: Sequence[np.ndarray], l2: float, batch_size: int
) -> None:
    """grads[i] += (l2 / batch_size) * weights[i], in place."""
    scale = l2 / batch_size
    for W, dW in zip(weights, grads):
        dW += scale * W


def decay_weights(weights: Sequence[np.ndarray], lr: float, weight_decay: float) -> None:
    """W -= lr * weight_decay * W, in place."""
    factor = 1.0 - lr * weight_decay
    for W in weights:
        W *= factor


def clip_grad_norm(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """Scale grads in place by max_norm / norm when their global norm exceeds max_norm.

    Returns the global L2 norm before clipping (as PyTorch's clip_grad_norm_).
    """
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads:
            g *= scale
    return norm


def apply_max_norm(weights: Sequence[np.ndarray], max_norm: float) -> None:
    """Rescale in place each column of every W `(n_in, n_out)` whose L2 norm exceeds max_norm."""
    for W in weights:
        norms = np.sqrt(np.einsum("ij,ij->j", W, W))
        too_long = norms > max_norm
        if too_long.any():
            W[:, too_long] *= max_norm / norms[too_long]
