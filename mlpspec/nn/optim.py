"""Optimizers, in order of increasing complexity (tinygrad style).

Each optimizer has one method, `step(params, grads, lr)`, which updates the
arrays in `params` in place from the matching `grads` (same order, shapes and
dtype) at this step's rate `lr` (from the schedule; the optimizer's own
`learning_rate` is the base rate the schedule starts from, used when `lr` is
not given). Constructors take exactly the keys of the optimizer's spec class;
the names below are declared in `mlpspec.registry`. An optimizer's state
(velocities, moments, step count) lives in the optimizer, allocated lazily
on the first step with the params' dtype, and round-trips
through `state_dict()` / `load_state_dict()` (plain `name -> ndarray`, names
`"<slot>.<param index>"` plus `"t"` for Adam's step count).

Conventions (PyTorch's, so results can be compared):

    sgd.v1                  p -= lr g
    momentum.v1(mu)         v = mu v + g;              p -= lr v
    nesterov.v1(mu)         v = mu v + g;              p -= lr (g + mu v)
    adam.v1                 m = b1 m + (1-b1) g;  s = b2 s + (1-b2) g^2;  t += 1
                            p -= lr (m / (1-b1^t)) / (sqrt(s / (1-b2^t)) + eps)
    adamw.v1(wd)            p -= lr wd p, then the adam.v1 update

Velocities start at zero, so the first momentum step equals an SGD step.
Gradients are never modified.

Speed: the update of an 800x800 layer is memory-bound (each array is 2.5 MB
and the in-place ops each stream it through memory), so `_blocks` walks the
flattened arrays in blocks of BLOCK elements and applies every op of the
update to one block before moving on; a block's arrays stay in the L2 cache.
On 784-800-800-10 (shared 2-core EPYC, best of 9) this took the momentum
update from ~1.5-1.65 ms to ~1.3-1.4 ms; for small arrays it changes nothing.

Fused steps: `sgd.v1` and `momentum.v1` have `FUSES` (when NumPy's own
OpenBLAS can be called directly, `mlpspec.nn.blas`): the trainer then hands
them each dense weight and bias gradient as a `Product` ((X, dY) and (1, dY)),
and they apply it in one GEMM that accumulates into the (scaled, see
`Momentum`) velocity or the parameter (`alpha = -lr`, `beta = 1`), then one
AXPY. Same formulas; the gradient is never written out, which saves a pass of
every weight-sized array per step.
The roundings differ from the array path (the AXPY may use fused
multiply-adds), so a fused run is not bit-equal to an unfused one; both are
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from mlpspec.errors import MlpspecError
from mlpspec.nn import blas
from mlpspec.nn.layers import Product


BLOCK = 65536  # elements: 256 kB per float32 array, so p, g, v and scratch fit in a 1 MB L2


class Optimizer:
    """Shared plumbing: lazily allocated per-parameter slots and their export."""

    SLOTS: tuple[str, ...] = ()
    # Scalar state kept beside the slots: state key -> (attribute, dtype, value when absent).
    SCALARS: dict[str, tuple[str, type, float]] = {}
    # Whether `step` takes dense weight and bias gradients as `Product`s (a^T b not
    # yet computed) and folds each into its update with one BLAS call
    # (mlpspec.nn.blas); the others get arrays only.
    FUSES = False

    def __init__(self, *, learning_rate: float) -> None:
        self.learning_rate = float(learning_rate)
        self.slots: dict[str, list[np.ndarray]] = {}
        self._scratch: list[np.ndarray] = []  # not state: reused temporaries
        self._fixed: list[tuple[blas.Fixed, ...]] = []  # fusing steps: (p, *slots) as blas.Fixed

    def _init_slots(self, params: Sequence[np.ndarray]) -> None:
        if self._scratch and len(self._scratch) == len(params):
            return
        if not all(p.flags.c_contiguous for p in params):
            raise ValueError(f"{type(self).__name__}: parameters must be C-contiguous arrays "
                             f"(updated through flat views)")
        for name in self.SLOTS:
            loaded = self.slots.get(name)
            if loaded is None:
                self.slots[name] = [np.zeros_like(p) for p in params]
            elif [a.shape for a in loaded] != [p.shape for p in params]:
                raise MlpspecError(
                    f"{type(self).__name__}: loaded state {name!r} has shapes {[a.shape for a in loaded]}, "
                    f"parameters have {[p.shape for p in params]}"
                )
            else:
                self.slots[name] = [a.astype(p.dtype, copy=False) for a, p in zip(loaded, params)]
        self._scratch = [np.empty(min(p.size, BLOCK), p.dtype) for p in params]
        self._fixed = []

    def _fixed_operands(self, params: Sequence[np.ndarray]) -> list[tuple[blas.Fixed, ...]]:
        """`(p, *slots)` of each parameter as `blas.Fixed` (addresses read once), for fused steps.

        Made again whenever `params` are not the very arrays they were made for.
        """
        fixed = self._fixed
        if len(fixed) != len(params) or any(f[0].array is not p for f, p in zip(fixed, params)):
            slots = [self.slots[name] for name in self.SLOTS]
            fixed = self._fixed = [tuple(blas.Fixed(a) for a in (p, *(s[i] for s in slots)))
                                   for i, p in enumerate(params)]
        return fixed

    def _blocks(self, params, grads, *slots):
        """Yield `(p, g, *slots, scratch)` as matching 1-D views, one block at a time.

        Gradients given as `Product`s are skipped: a fusing optimizer applies those itself.
        """
        for p, g, *rest, scratch in zip(params, grads, *slots, self._scratch):
            if isinstance(g, Product):
                continue
            flat = [p.reshape(-1), g.reshape(-1), *(a.reshape(-1) for a in rest)]
            if p.size <= BLOCK:
                yield (*flat, scratch[: p.size])
                continue
            for start in range(0, p.size, BLOCK):
                block = [a[start : start + BLOCK] for a in flat]
                yield (*block, scratch[: block[0].size])

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float | None = None) -> None:
        """Update `params` in place from `grads` at learning rate `lr` (default `learning_rate`).

        An optimizer is bound to one list of parameters (same order, shapes
        and C-contiguous arrays on every call), e.g. `Network.parameters()`.
        """
        self._init_slots(params)
        self._update(params, grads, self.learning_rate if lr is None else lr)

    def _update(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"{name}.{i}": a.copy() for name, arrays in self.slots.items() for i, a in enumerate(arrays)}
        for key, (attribute, dtype, _) in self.SCALARS.items():
            state[key] = np.array(getattr(self, attribute), dtype=dtype)
        return state

    def load_state_dict(self, arrays: Mapping[str, np.ndarray]) -> None:
        arrays = dict(arrays)
        for key, (attribute, dtype, absent) in self.SCALARS.items():
            setattr(self, attribute, np.array(arrays.pop(key, absent), dtype=dtype).item())
        slots: dict[str, list[np.ndarray]] = {}
        for name in self.SLOTS:
            count = sum(1 for key in arrays if key.rsplit(".", 1)[0] == name)
            slots[name] = [np.array(arrays[f"{name}.{i}"]) for i in range(count)]
        unknown = set(arrays) - {f"{n}.{i}" for n, a in slots.items() for i in range(len(a))}
        if unknown:
            raise MlpspecError(f"{type(self).__name__}: unexpected optimizer state {sorted(unknown)}")
        self.slots, self._scratch = slots, []


class SGD(Optimizer):
    FUSES = blas.AVAILABLE

    def _update(self, params, grads, lr):
        for (p,), g in zip(self._fixed_operands(params), grads):
            if isinstance(g, Product):
                blas.gemm_tn(g.a, g.b, p, alpha=-lr, beta=1.0)  # p <- p - lr a^T b, one GEMM
        for p, g, tmp in self._blocks(params, grads):
            p -= np.multiply(g, lr, out=tmp)


class Momentum(Optimizer):
    """`v = mu v + g; p -= lr v`, with the velocity stored scaled (why: the fused GEMM's beta).

    The arrays hold `u = v / c` for a scalar `c` (the product of the momenta
    since the last renormalisation), so a step is `c <- mu c; u <- u + g / c;
    p <- p - lr c u`: the same velocity, but the fused GEMM accumulates into
    `u` with beta = 1. With any other beta OpenBLAS first streams the whole
    output through memory once to scale it; skipping that pass made a whole
    784-800-800-10 step ~8 % faster (paired chunks of steps, docs/performance.md).
    When `c` would fall below 2^-20 (every 132nd step at mu = 0.9, every step
    at mu = 0), the step renormalises instead: `u <- (mu c) u + g; c <- 1`,
    so `u` stays within a factor 2^20 of `v` (float32 has range to spare).
    `state_dict()` holds `u` and `c` ("velocity_scale"), so a resumed run
    continues bit for bit; a state without the scale is a plain velocity.
    """

    SLOTS = ("velocity",)
    SCALARS = {"velocity_scale": ("scale", np.float64, 1.0)}
    FUSES = blas.AVAILABLE
    RENORMALISE_BELOW = 2.0 ** -20

    def __init__(self, *, learning_rate: float, momentum: float):
        super().__init__(learning_rate=learning_rate)
        self.momentum = float(momentum)
        self.scale = 1.0  # c: the velocity is c * slots["velocity"]

    def _update(self, params, grads, lr):
        scale = self.scale * self.momentum
        if scale < self.RENORMALISE_BELOW:  # u <- (mu c) u + g, then c = 1
            alpha, beta, scale = 1.0, scale, 1.0
        else:  # u <- u + g / c
            alpha, beta = 1.0 / scale, 1.0
        self.scale = scale
        for (p, u), g in zip(self._fixed_operands(params), grads):
            if isinstance(g, Product):
                blas.gemm_tn(g.a, g.b, u, alpha=alpha, beta=beta)  # u <- alpha a^T b + beta u
                blas.axpy(-lr * scale, u, p)  # p <- p - lr c u
        for p, g, u, tmp in self._blocks(params, grads, self.slots["velocity"]):
            if beta != 1.0:
                u *= beta
            u += np.multiply(g, alpha, out=tmp) if alpha != 1.0 else g
            p -= np.multiply(u, lr * scale, out=tmp)


class Nesterov(Optimizer):
    """`v = mu v + g; p -= lr (g + mu v)`, velocity stored as is.

    Not fused: its step needs the gradient itself next to the new velocity,
    so folding the product into v would cost a pass more than it saves.
    """

    SLOTS = ("velocity",)

    def __init__(self, *, learning_rate: float, momentum: float):
        super().__init__(learning_rate=learning_rate)
        self.momentum = float(momentum)

    def _update(self, params, grads, lr):
        for p, g, v, tmp in self._blocks(params, grads, self.slots["velocity"]):
            v *= self.momentum
            v += g
            np.multiply(v, self.momentum, out=tmp)
            tmp += g
            tmp *= lr
            p -= tmp


class Adam(Optimizer):
    SLOTS = ("m", "s")
    SCALARS = {"t": ("t", np.int64, 0)}

    def __init__(self, *, learning_rate: float, beta1: float, beta2: float, epsilon: float):
        super().__init__(learning_rate=learning_rate)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        self.t = 0

    def _update(self, params, grads, lr):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = lr / (1.0 - b1**self.t)
        root_correction = math.sqrt(1.0 - b2**self.t)
        for p, g, m, s, tmp in self._blocks(params, grads, self.slots["m"], self.slots["s"]):
            m *= b1
            m += np.multiply(g, 1.0 - b1, out=tmp)
            s *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            s += tmp
            # denominator sqrt(s / (1 - b2^t)) + eps, as sqrt(s) / sqrt(1 - b2^t) + eps
            np.sqrt(s, out=tmp)
            tmp /= root_correction
            tmp += self.epsilon
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp


class AdamW(Adam):
    def __init__(self, *, learning_rate: float, beta1: float, beta2: float, epsilon: float,
                 weight_decay: float):
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon)
        self.weight_decay = float(weight_decay)

    def _update(self, params, grads, lr):
        for p in params:
            p *= 1.0 - lr * self.weight_decay
        super()._update(params, grads, lr)

