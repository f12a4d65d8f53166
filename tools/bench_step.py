"""Time one training step (forward, loss, backward, momentum update) on random data.

    python tools/bench_step.py [784,256,128,10] [batch_size] [steps]

Prints milliseconds per step and the projected seconds per MNIST epoch
(60000 samples): the engine alone, without data handling; tools/bench_train.py
compares whole epochs with PyTorch.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mlpspec import registry
from mlpspec.spec.model import RegularizationSpec
from mlpspec.train import train_step


def time_step(
    sizes: list[int], batch_size: int = 128, steps: int = 100, repeats: int = 7, dtype=np.float32, seed: int = 0
) -> float:
    """Seconds per training step for a ReLU MLP with `sizes` (input first).

    The best of `repeats` runs of `steps` steps: on a shared machine the
    minimum is the stable statistic (interference only ever adds time).
    """
    rng = np.random.default_rng(seed)
    specs = []
    for units in sizes[1:-1]:
        specs += [("dense.v1", {"units": units}), ("relu.v1", {})]
    specs.append(("dense.v1", {"units": sizes[-1]}))
    net = registry.make_network(specs, sizes[0], rng, dtype)
    loss = registry.make("loss", "softmax_cross_entropy.v1")
    optimizer = registry.make("optimizer", "momentum.v1", {"momentum": 0.9})
    X = rng.random((batch_size, sizes[0]), dtype=dtype)
    T = rng.integers(0, sizes[-1], batch_size)
    none = RegularizationSpec()

    def step():  # the step `fit` takes (fused momentum update where NumPy's OpenBLAS allows)
        train_step(network=net, loss=loss, optimizer=optimizer, regularization=none, X=X, T=T, lr=0.01)

    for _ in range(20):
        step()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        runs.append((time.perf_counter() - start) / steps)
    return min(runs)


def main(argv: list[str]) -> None:
    sizes = [int(s) for s in argv[0].split(",")] if argv else [784, 256, 128, 10]
    batch_size = int(argv[1]) if len(argv) > 1 else 128
    steps = int(argv[2]) if len(argv) > 2 else 100
    seconds = time_step(sizes, batch_size, steps)
    epoch = seconds * -(-60000 // batch_size)
    print(f"{'-'.join(map(str, sizes))} batch {batch_size}: {seconds * 1e3:.3f} ms/step, {epoch:.2f} s/epoch")


if __name__ == "__main__":
    main(sys.argv[1:])
