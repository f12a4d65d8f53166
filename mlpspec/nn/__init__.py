"""The numeric engine: layers and their chain, losses, optimizers, schedules.

    layers      Layer classes, Network (forward -> (Y, backprop))
    init        initializer functions for dense weights
    losses      loss classes (loss(Z, T) -> (value, dZ)), probabilities
    optim       Optimizer classes (step(params, grads, lr))
    regularize  L2, decoupled weight decay, max-norm, gradient clipping
    schedules   Schedule classes (lr_at(step, total_steps, steps_per_epoch))
    blas        GEMM with accumulation and AXPY in NumPy's own OpenBLAS (fused updates)

Constructors take exactly the keys of the matching spec classes; the names
that choose them ("dense.v1", "adam.v1") are declared in `mlpspec.registry`.
"""

from mlpspec.nn.layers import Layer, Network
from mlpspec.nn.losses import probabilities
from mlpspec.nn.optim import Optimizer
from mlpspec.nn.schedules import Schedule

__all__ = ["Layer", "Network", "Optimizer", "Schedule", "probabilities"]
