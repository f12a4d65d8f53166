"""The peer side of tools/bench_train.py: one architecture in PyTorch (and scikit-learn).

    python _torch_mlp.py DATA_DIR 784-256-128-10 --epochs 3 [--sklearn] [--lockstep]

Runs in a throwaway venv with torch (and scikit-learn), never in mlpspec's.
DATA_DIR holds x_train, y_train, x_test, y_test as `.npy` files (float32
pixels in [0, 1], int64 labels). Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn



def load(data_dir: Path) -> dict[str, np.ndarray]:
    names = ("x_train", "y_train", "x_test", "y_test")
    return {name: np.load(data_dir / f"{name}.npy", allow_pickle=False) for name in names}


def build(sizes: list[int]) -> nn.Sequential:
    """ReLU MLP, He-normal weights (fan_in; torch's W is (out, in)), zero biases."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        linear = nn.Linear(n_in, n_out)
        nn.init.kaiming_normal_(linear.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def lockstep_wait() -> None:
    """Block until the benchmark says "go" on stdin (`--lockstep`, see tools/bench_train.py)."""
    line = sys.stdin.readline().strip()
    if line != "go":
        raise SystemExit(f"_torch_mlp.py --lockstep: expected 'go' on stdin, got {line!r}")


def run_torch(data: dict[str, np.ndarray], sizes: list[int], epochs: int, batch_size: int,
              lr: float, momentum: float, lockstep: bool = False) -> dict:
    torch.manual_seed(0)
    X, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    model = build(sizes)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(0)
    n = len(X)
    seconds, train_loss = [], 0.0
    if lockstep:
        print("ready", flush=True)
    for _ in range(epochs):
        if lockstep:
            lockstep_wait()
        start = time.perf_counter()
        order = torch.randperm(n, generator=shuffle)
        loss_sum = 0.0
        for first in range(0, n, batch_size):
            index = order[first:first + batch_size]
            loss = loss_fn(model(X[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(index)  # mlpspec tallies the loss too
        seconds.append(time.perf_counter() - start)
        train_loss = loss_sum / n
        if lockstep:
            print(json.dumps({"epoch_seconds": seconds[-1]}), flush=True)
    with torch.no_grad():
        predicted = model(torch.from_numpy(data["x_test"])).argmax(dim=1).numpy()
    return {"s_per_epoch": statistics.median(seconds), "epoch_seconds": seconds,
            "train_loss": train_loss,
            "test_accuracy": float(np.mean(predicted == data["y_test"])),
            "threads": torch.get_num_threads(), "version": torch.__version__,
            "numpy": np.__version__, "pools": _pools()}


def run_sklearn(data: dict[str, np.ndarray], sizes: list[int], epochs: int, batch_size: int,
                lr: float, momentum: float) -> dict:
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    classifier = MLPClassifier(
        hidden_layer_sizes=tuple(sizes[1:-1]), solver="sgd", momentum=momentum,
        nesterovs_momentum=False, learning_rate_init=lr, batch_size=batch_size, alpha=0,
        max_iter=epochs, shuffle=True, tol=0, n_iter_no_change=10**9, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the point
        classifier.fit(data["x_train"], data["y_train"])
    seconds = time.perf_counter() - start
    return {"s_per_epoch": seconds / epochs,
            "test_accuracy": float(classifier.score(data["x_test"], data["y_test"])),
            "dtype": str(classifier.coefs_[0].dtype), "threads": _blas_threads(),
            "version": sklearn.__version__}


def _pools() -> list[dict]:
    """torch's (and NumPy's) BLAS and OpenMP pools as threadpoolctl reports them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "architecture", "threading_layer", "num_threads",
            "prefix")
    return [{key: info.get(key) for key in keys} for info in threadpool_info()]


def _blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.cpu_count()
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(blas, default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("arch", help="layer sizes, input first, e.g. 784-256-128-10")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the cores)")
    parser.add_argument("--sklearn", action="store_true", help="also time MLPClassifier")
    parser.add_argument("--lockstep", action="store_true",
                        help='print "ready", then run each epoch on a "go" line from stdin and '
                             'print its seconds (tools/bench_train.py alternates epochs this way)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load(args.data_dir)
    sizes = [int(units) for units in args.arch.split("-")]
    recipe = (sizes, args.epochs, args.batch_size, args.lr, args.momentum)
    out = {"torch": run_torch(data, *recipe, lockstep=args.lockstep)}
    if args.sklearn:
        out["sklearn"] = run_sklearn(data, *recipe)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
