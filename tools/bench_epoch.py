"""Where one MNIST training epoch goes: the parts of `fit`'s loop timed one by one.

    python tools/bench_epoch.py [784-800-800-10] [--epochs 2] [--threads 2]

The benchmark recipe of tools/bench_train.py (60k samples, batch 128,
momentum 0.9, float32), run through the engine's own pieces in `fit`'s
order, with a clock read between them: the shuffle and the batch gather, the
forward pass of each layer, the loss, the backward pass of each layer, the
optimizer step (for `momentum.v1` it also computes the dense layers' weight
and bias gradients: they are folded into the update, `mlpspec.nn.blas`) and the
running-accuracy bookkeeping. Per epoch it prints the seconds of each part
and their sum against the epoch's wall time. Clock reads cost ~0.1 us each,
so the split adds under 1 % to the epoch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import bench_spec, load_data  # noqa: E402  (the same recipe and data)


def split_epochs(arch: str, epochs: int) -> list[dict[str, float]]:
    from mlpspec import rng
    from mlpspec.train import build_loss, build_network, build_optimizer

    spec = bench_spec(arch, epochs)
    data = load_data(spec)
    network, loss, optimizer = build_network(spec), build_loss(spec, data), build_optimizer(spec)
    names = [name for name, _ in network.parameters()]
    params = [array for _, array in network.parameters()]
    shuffle = rng.generator(spec.seed, "shuffle")
    n, batch = len(data.x_train), spec.train.batch_size
    lr = spec.train.optimizer.learning_rate
    out = []
    for _ in range(epochs):
        parts: dict[str, float] = {}

        def lap(name: str, since: float) -> float:
            now = time.perf_counter()
            parts[name] = parts.get(name, 0.0) + now - since
            return now

        start = t = time.perf_counter()
        order = shuffle.permutation(n)
        t = lap("shuffle", t)
        for first in range(0, n, batch):
            index = order[first:first + batch]
            X, T = data.x_train[index], data.t_train[index]
            t = lap("gather", t)
            backprops = []
            for i, layer in enumerate(network.layers):
                X, backprop = layer.forward(X, training=True)
                backprops.append(backprop)
                t = lap(f"forward {i} {type(layer).__name__}", t)
            _, dY = loss(X, T)
            t = lap("loss", t)
            grads = {}
            for i in range(len(backprops) - 1, -1, -1):
                defer = {"defer": True} if optimizer.FUSES and network.layers[i].WEIGHTS else {}
                dY, layer_grads = backprops[i](dY, need_dX=i > 0, **defer)
                grads.update({f"layers.{i}.{key}": grad for key, grad in layer_grads.items()})
                t = lap(f"backward {i} {type(network.layers[i]).__name__}", t)
            optimizer.step(params, [grads[name] for name in names], lr)
            t = lap("optimizer step" + (" (+ dW products)" if optimizer.FUSES else ""), t)
            int(np.count_nonzero(X.argmax(axis=1) == data.y_train[index]))
            t = lap("bookkeeping", t)
        parts["epoch (wall)"] = time.perf_counter() - start
        out.append(parts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", nargs="?", default="784-800-800-10")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads (default 2)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    os.environ.setdefault("MLPSPEC_MIRRORS", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
    with threadpool_limits(args.threads, user_api="blas"):
        epochs = split_epochs(args.arch, args.epochs)
    print(f"{args.arch}, batch 128, momentum, {args.threads} BLAS thread(s): seconds per epoch")
    for name in epochs[0]:
        print(f"  {name:34} " + "  ".join(f"{parts[name]:6.3f}" for parts in epochs))
    print(f"  {'sum of the parts':34} " + "  ".join(
        f"{sum(v for k, v in parts.items() if k != 'epoch (wall)'):6.3f}" for parts in epochs))


if __name__ == "__main__":
    main()
