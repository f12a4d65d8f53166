"""The numeric engine: layers and their chain, losses, optimizers, schedules.

    layers      LAYERS registry, make_layer, Network (forward -> (Y, backprop))
    init        INITIALIZERS for dense weights
    losses      LOSSES registry (loss(Z, T) -> (value, dZ)), probabilities
    optim       OPTIMIZERS registry (step(params, grads, lr)), make_optimizer
    regularize  L2, decoupled weight decay, max-norm, gradient clipping
    schedules   SCHEDULES registry (lr_at(step, total_steps, steps_per_epoch))
"""

from mlpspec.nn.init import INITIALIZERS
from mlpspec.nn.layers import LAYERS, Layer, Network, build_network, make_layer
from mlpspec.nn.losses import LOSSES, probabilities
from mlpspec.nn.optim import OPTIMIZERS, Optimizer, make_optimizer
from mlpspec.nn.schedules import SCHEDULES, make_schedule

__all__ = [
    "INITIALIZERS",
    "LAYERS",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "Layer",
    "Network",
    "Optimizer",
    "build_network",
    "make_layer",
    "make_optimizer",
    "make_schedule",
    "probabilities",
]
