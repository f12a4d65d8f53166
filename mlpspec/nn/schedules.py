"""Learning-rate schedules: pure functions of progress, evaluated every step.

A schedule is built from the optimizer's `learning_rate` and exactly the keys
of its spec class (the names are declared in `mlpspec.registry`), and
`lr_at(step, total_steps, steps_per_epoch)` gives the learning rate for the
0-based optimizer step `step` of a run of `total_steps` steps. The learning
rate is updated every step (smooth decay); where a schedule is defined in
epochs, epoch e covers steps [e * steps_per_epoch, (e + 1) * steps_per_epoch).
With `lr` the optimizer's learning rate:

    constant.v1()                        lr
    step.v1(step_epochs, gamma)          lr * gamma ** (epoch // step_epochs),
                                         epoch = step // steps_per_epoch (integer)
    exponential.v1(gamma)                lr * gamma ** (step / steps_per_epoch):
                                         gamma per epoch, applied continuously
                                         (equal to PyTorch's ExponentialLR at epoch starts)
    cosine.v1(min_lr)                    min_lr + (lr - min_lr) (1 + cos(pi step / total_steps)) / 2
    onecycle.v1(pct_start, div_factor, final_div_factor)
                                         PyTorch OneCycleLR (two phases, cosine annealing)
                                         peaking at lr: from lr / div_factor up to lr at
                                         step pct_start * total_steps - 1, then down to
                                         lr / div_factor / final_div_factor at the last step.

The schedules that declare `warmup_epochs` (all but onecycle.v1, which warms
up by itself) share one linear warm-up, `Schedule.lr_at`: for the first
W = warmup_epochs * steps_per_epoch steps, step k uses (k + 1) / W of the
scheduled rate (so no step is spent at lr 0), then the schedule unchanged.
"""

from __future__ import annotations

import math


class Schedule:
    """Shared plumbing: the base rate and the linear warm-up around `scheduled`."""

    warmup_epochs = 0.0

    def __init__(self, learning_rate: float, warmup_epochs: float = 0.0):
        self.learning_rate, self.warmup_epochs = float(learning_rate), float(warmup_epochs)

    def lr_at(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The learning rate of 0-based step `step`, warm-up included."""
        lr = self.scheduled(step, total_steps, steps_per_epoch)
        warmup_steps = self.warmup_epochs * steps_per_epoch
        if step < warmup_steps:
            lr *= min(1.0, (step + 1) / warmup_steps)
        return lr

    def scheduled(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        raise NotImplementedError


class Constant(Schedule):
    def __init__(self, learning_rate: float, *, warmup_epochs: float):
        super().__init__(learning_rate, warmup_epochs)

    def scheduled(self, step, total_steps, steps_per_epoch):
        return self.learning_rate


class Step(Schedule):
    def __init__(self, learning_rate: float, *, step_epochs: int, gamma: float, warmup_epochs: float):
        super().__init__(learning_rate, warmup_epochs)
        self.step_epochs, self.gamma = step_epochs, float(gamma)

    def scheduled(self, step, total_steps, steps_per_epoch):
        epoch = step // steps_per_epoch
        return self.learning_rate * self.gamma ** (epoch // self.step_epochs)


class Exponential(Schedule):
    def __init__(self, learning_rate: float, *, gamma: float, warmup_epochs: float):
        super().__init__(learning_rate, warmup_epochs)
        self.gamma = float(gamma)

    def scheduled(self, step, total_steps, steps_per_epoch):
        return self.learning_rate * self.gamma ** (step / steps_per_epoch)


def _cosine_between(start: float, end: float, fraction: float) -> float:
    """start at fraction 0, end at fraction 1, along half a cosine."""
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


class Cosine(Schedule):
    def __init__(self, learning_rate: float, *, min_lr: float, warmup_epochs: float):
        super().__init__(learning_rate, warmup_epochs)
        self.min_lr = float(min_lr)

    def scheduled(self, step, total_steps, steps_per_epoch):
        return _cosine_between(self.learning_rate, self.min_lr, min(step / total_steps, 1.0))


class OneCycle(Schedule):
    def __init__(self, learning_rate: float, *, pct_start: float, div_factor: float,
                 final_div_factor: float):
        super().__init__(learning_rate)
        self.pct_start, self.div_factor = float(pct_start), float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.initial_lr = self.learning_rate / self.div_factor
        self.final_lr = self.initial_lr / self.final_div_factor

    def scheduled(self, step, total_steps, steps_per_epoch):
        peak = self.pct_start * total_steps - 1.0  # PyTorch's end of phase one
        last = total_steps - 1.0
        if step <= peak:
            return _cosine_between(self.initial_lr, self.learning_rate, step / peak if peak > 0 else 1.0)
        return _cosine_between(self.learning_rate, self.final_lr, min((step - peak) / (last - peak), 1.0))
