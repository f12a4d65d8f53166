"""Learning-rate schedules: pure functions of progress, evaluated every step.

A schedule is built with the optimizer's `base_lr` and its spec keys, and
`lr_at(step, total_steps, steps_per_epoch)` gives the learning rate for the
0-based optimizer step `step` of a run of `total_steps` steps. The learning
rate is updated every step (smooth decay); where a schedule is defined in
epochs, epoch e covers steps [e * steps_per_epoch, (e + 1) * steps_per_epoch).

    constant.v1()                        base_lr
    step.v1(step_epochs, gamma=0.1)      base_lr * gamma ** (epoch // step_epochs),
                                         epoch = step // steps_per_epoch (integer)
    exponential.v1(gamma)                base_lr * gamma ** (step / steps_per_epoch):
                                         gamma per epoch, applied continuously
                                         (equal to PyTorch's ExponentialLR at epoch starts)
    cosine.v1(min_lr=0.0)                min_lr + (base_lr - min_lr) (1 + cos(pi step / total_steps)) / 2
    onecycle.v1(max_lr, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
                                         PyTorch OneCycleLR (two phases, cosine annealing):
                                         from max_lr / div_factor up to max_lr at step
                                         pct_start * total_steps - 1, then down to
                                         max_lr / div_factor / final_div_factor at the
                                         last step. base_lr is ignored.

`make_schedule(..., warmup_epochs=w)` wraps any of them in a linear warm-up:
for the first W = w * steps_per_epoch steps, step k uses (k + 1) / W of the
scheduled rate (so no step is spent at lr 0), then the schedule unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


class Constant:
    NAME = "constant.v1"

    def __init__(self, base_lr: float):
        self.base_lr = float(base_lr)

    def lr_at(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        return self.base_lr


class Step:
    NAME = "step.v1"

    def __init__(self, base_lr: float, step_epochs: int, gamma: float = 0.1):
        if isinstance(step_epochs, bool) or not isinstance(step_epochs, int) or step_epochs < 1:
            raise ValueError(f"step.v1: step_epochs must be a positive integer, got {step_epochs!r}")
        self.base_lr, self.step_epochs, self.gamma = float(base_lr), step_epochs, float(gamma)

    def lr_at(self, step, total_steps, steps_per_epoch):
        epoch = step // steps_per_epoch
        return self.base_lr * self.gamma ** (epoch // self.step_epochs)


class Exponential:
    NAME = "exponential.v1"

    def __init__(self, base_lr: float, gamma: float):
        self.base_lr, self.gamma = float(base_lr), float(gamma)

    def lr_at(self, step, total_steps, steps_per_epoch):
        return self.base_lr * self.gamma ** (step / steps_per_epoch)


def _cosine_between(start: float, end: float, fraction: float) -> float:
    """start at fraction 0, end at fraction 1, along half a cosine."""
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


class Cosine:
    NAME = "cosine.v1"

    def __init__(self, base_lr: float, min_lr: float = 0.0):
        self.base_lr, self.min_lr = float(base_lr), float(min_lr)

    def lr_at(self, step, total_steps, steps_per_epoch):
        return _cosine_between(self.base_lr, self.min_lr, min(step / total_steps, 1.0))


class OneCycle:
    NAME = "onecycle.v1"

    def __init__(
        self,
        base_lr: float,
        max_lr: float,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        if not 0.0 < float(pct_start) < 1.0:
            raise ValueError(f"onecycle.v1: pct_start must be in (0, 1), got {pct_start!r}")
        self.max_lr, self.pct_start = float(max_lr), float(pct_start)
        self.initial_lr = self.max_lr / float(div_factor)
        self.final_lr = self.initial_lr / float(final_div_factor)

    def lr_at(self, step, total_steps, steps_per_epoch):
        peak = self.pct_start * total_steps - 1.0  # PyTorch's end of phase one
        last = total_steps - 1.0
        if step <= peak:
            return _cosine_between(self.initial_lr, self.max_lr, step / peak if peak > 0 else 1.0)
        return _cosine_between(self.max_lr, self.final_lr, min((step - peak) / (last - peak), 1.0))


class Warmup:
    """Linear warm-up over `warmup_epochs` in front of another schedule."""

    def __init__(self, schedule, warmup_epochs: float):
        if not float(warmup_epochs) >= 0.0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}")
        self.schedule, self.warmup_epochs = schedule, float(warmup_epochs)

    def lr_at(self, step, total_steps, steps_per_epoch):
        lr = self.schedule.lr_at(step, total_steps, steps_per_epoch)
        warmup_steps = self.warmup_epochs * steps_per_epoch
        if step < warmup_steps:
            lr *= min(1.0, (step + 1) / warmup_steps)
        return lr


SCHEDULES: dict[str, type] = {
    "constant.v1": Constant,
    "step.v1": Step,
    "exponential.v1": Exponential,
    "cosine.v1": Cosine,
    "onecycle.v1": OneCycle,
}


def make_schedule(type_name: str, params: Mapping, base_lr: float, warmup_epochs: float = 0.0):
    """Construct the registered schedule from its spec keys, wrapped in a warm-up if asked."""
    if type_name not in SCHEDULES:
        raise ValueError(f"unknown schedule {type_name!r}; known: {', '.join(SCHEDULES)}")
    try:
        schedule = SCHEDULES[type_name](base_lr, **dict(params))
    except TypeError as error:
        raise ValueError(f"{type_name}: {error}") from None
    return Warmup(schedule, warmup_epochs) if warmup_epochs else schedule
