"""Training speed of mlpspec side by side with PyTorch CPU (and scikit-learn) on MNIST.

    python tools/bench_train.py [--epochs 3] [--arch 784-256-128-10]... \\
        [--torch-python PATH] [--no-sklearn]

Trains each architecture (ReLU hidden layers) with one recipe in mlpspec and,
in a subprocess, in PyTorch: full 60k training set scaled to [0, 1], float32,
He-normal weights and zero biases, softmax cross-entropy, batch 128, SGD with
momentum 0.9 (PyTorch convention) at a constant 0.05, reshuffled every epoch.
Reports for each the median seconds per epoch, the ratio mlpspec / torch and
the test accuracy on the full 10k test set. scikit-learn's MLPClassifier runs
the same recipe on the smallest architecture (its own Glorot init; its time is
the whole fit divided by the epochs). The last line printed is one JSON object.

PyTorch is never a dependency of mlpspec: it lives in the interpreter given by
`--torch-python`, by default a venv made (once) at
`${TMPDIR:-/tmp}/mlpspec-bench-venv`. The data reaches it as `.npy` files.
MNIST comes through mlpspec's loader; `MLPSPEC_MIRRORS` defaults to the local
copy in `../shared/data/mnist`. Figures are wall-clock and noisy on a shared
2-core machine: compare runs of one invocation, not across invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import attrs
import numpy as np

from mlpspec.data.prepare import load_raw, prepare
from mlpspec.spec import parse_spec
from mlpspec.train import build_loss, evaluate_split, fit

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"
ARCHS = ("784-256-128-10", "784-512-256-10", "784-800-800-10")
SKLEARN_ARCH = ARCHS[0]
TARGETS = {"784-256-128-10": 1.0, "784-800-800-10": 1.0}  # largest acceptable ratio
BATCH_SIZE, LEARNING_RATE, MOMENTUM = 128, 0.05, 0.9
TORCH_REQUIREMENTS = ("torch==2.13.0", "scikit-learn", "numpy")

SPEC = """
spec_version = 1
name = "bench-{arch}"
seed = 0

[data]
source = "mnist"
preprocess = {{ scale = "unit", flatten = true, one_hot = false }}
validation = {{ take_from = "none" }}

[network]
inputs = {inputs}
layers = [{layers}]

[train]
epochs = {epochs}
batch_size = {batch_size}
precision = "float32"
loss = {{ type = "softmax_cross_entropy.v1" }}
optimizer = {{ type = "momentum.v1", learning_rate = {lr}, momentum = {momentum} }}
"""


def bench_spec(arch: str, epochs: int):
    """The benchmark recipe for `arch` ("784-256-128-10") as a validated mlpspec spec."""
    sizes = [int(units) for units in arch.split("-")]
    layers = [f'{{ type = "dense.v1", units = {units}, init = "he_normal" }}, {{ type = "relu.v1" }}'
              for units in sizes[1:-1]]
    layers.append(f'{{ type = "dense.v1", units = {sizes[-1]}, init = "he_normal" }}')
    text = SPEC.format(arch=arch, inputs=sizes[0], layers=", ".join(layers), epochs=epochs,
                       batch_size=BATCH_SIZE, lr=LEARNING_RATE, momentum=MOMENTUM)
    return parse_spec(text, f"<bench {arch}>")


def load_data(spec):
    """MNIST prepared as the spec says: 60k training rows, no validation split."""
    raw = load_raw(spec.data, REPO)
    # prepare() cannot flatten the empty validation split of take_from = "none"
    # (reshape(0, -1) is ambiguous), so the samples arrive flattened already.
    flat = attrs.evolve(raw, x_train=raw.x_train.reshape(len(raw.x_train), -1),
                        x_test=raw.x_test.reshape(len(raw.x_test), -1))
    data_spec = attrs.evolve(spec.data, preprocess=attrs.evolve(spec.data.preprocess, flatten=False))
    return prepare(flat, data_spec, spec.seed, spec.train.precision)


def run_mlpspec(spec, data) -> dict:
    result = fit(spec, data)
    seconds = [record.seconds for record in result.history]
    _, accuracy = evaluate_split(result.network, build_loss(spec), data.x_test, data.y_test)
    return {"s_per_epoch": statistics.median(seconds), "epoch_seconds": seconds,
            "test_accuracy": accuracy}


def run_peer(python: str, data_dir: Path, arch: str, epochs: int, with_sklearn: bool) -> dict:
    command = [python, str(TOOLS / "_torch_mlp.py"), str(data_dir), arch, "--epochs", str(epochs),
               "--batch-size", str(BATCH_SIZE), "--lr", str(LEARNING_RATE),
               "--momentum", str(MOMENTUM)]
    if with_sklearn:
        command.append("--sklearn")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_python(given: str | None) -> str:
    """The interpreter that runs the peers: `given`, or the reusable bench venv."""
    if given:
        return given
    venv = Path(os.environ.get("TMPDIR", "/tmp")) / "mlpspec-bench-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import torch, sklearn"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    print(f"creating {venv} with {' '.join(TORCH_REQUIREMENTS)} ...", file=sys.stderr)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TORCH_REQUIREMENTS],
                   check=True, stdout=sys.stderr)
    return str(python)


def numpy_threads() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"threads": os.cpu_count(), "source": "os.cpu_count (no threadpoolctl)"}
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return {"threads": max(blas, default=None), "source": "threadpoolctl"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--arch", action="append", choices=ARCHS,
                        help="architecture to run (repeatable; default all)")
    parser.add_argument("--torch-python", help="python with torch and scikit-learn "
                        "(default: a venv in ${TMPDIR:-/tmp}/mlpspec-bench-venv)")
    parser.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs: expected a positive integer, found {args.epochs}")
    archs = [arch for arch in ARCHS if arch in (args.arch or ARCHS)]
    os.environ.setdefault("MLPSPEC_MIRRORS", str(REPO.parent / "shared" / "data" / "mnist"))
    python = torch_python(args.torch_python)
    load_before = os.getloadavg()[0]

    data = load_data(bench_spec(archs[0], args.epochs))
    results = []
    with tempfile.TemporaryDirectory(prefix="mlpspec-bench-") as tmp:
        data_dir = Path(tmp)
        for name, array in (("x_train", data.x_train), ("y_train", data.y_train),
                            ("x_test", data.x_test), ("y_test", data.y_test)):
            np.save(data_dir / f"{name}.npy", array, allow_pickle=False)
        for arch in archs:
            with_sklearn = arch == SKLEARN_ARCH and not args.no_sklearn
            print(f"{arch}: mlpspec, then torch{' and sklearn' * with_sklearn} ...", file=sys.stderr)
            ours = run_mlpspec(bench_spec(arch, args.epochs), data)
            results.append((arch, ours, run_peer(python, data_dir, arch, args.epochs, with_sklearn)))

    rows = []
    for arch, ours, peer in results:
        torch_side, sk = peer["torch"], peer.get("sklearn")
        rows.append({
            "arch": arch,
            "mlpspec_s_per_epoch": round(ours["s_per_epoch"], 3),
            "torch_s_per_epoch": round(torch_side["s_per_epoch"], 3),
            "ratio": round(ours["s_per_epoch"] / torch_side["s_per_epoch"], 3),
            "mlpspec_test_accuracy": round(ours["test_accuracy"], 4),
            "torch_test_accuracy": round(torch_side["test_accuracy"], 4),
            "sklearn_s_per_epoch": round(sk["s_per_epoch"], 3) if sk else None,
            "sklearn_test_accuracy": round(sk["test_accuracy"], 4) if sk else None,
            "mlpspec_epoch_seconds": [round(s, 3) for s in ours["epoch_seconds"]],
            "torch_epoch_seconds": [round(s, 3) for s in torch_side["epoch_seconds"]],
        })
    peers = results[0][2]
    threads = {"numpy": numpy_threads(), "torch": peers["torch"]["threads"]}
    versions = {"numpy": np.__version__, "torch": peers["torch"]["version"]}
    notes = []
    if load_before > 1.0:
        notes.append(f"the machine was busy before the run (1-min load {load_before:.2f}): "
                     f"torch's OpenMP threads suffer most from a shared core")
    if "sklearn" in peers:
        sk = peers["sklearn"]
        threads["sklearn_blas"] = sk["threads"]
        versions["sklearn"] = sk["version"]
        notes.append(f"sklearn computes in {sk['dtype']} (float32 input), Glorot-uniform init, "
                     f"time = whole fit / epochs")
    targets = {arch: target for arch, target in TARGETS.items() if arch in archs}
    met = all(row["ratio"] <= TARGETS[row["arch"]] for row in rows if row["arch"] in targets)

    print(f"{args.epochs} epochs, batch {BATCH_SIZE}, median seconds per epoch; threads {threads}")
    header = (f"{'architecture':16} {'mlpspec s':>9} {'torch s':>8} {'ratio':>6} "
              f"{'sklearn s':>9} {'acc mlpspec':>11} {'acc torch':>9} {'acc sklearn':>11}")
    print(header)
    for row in rows:
        sk_time = f"{row['sklearn_s_per_epoch']:9.2f}" if row["sklearn_s_per_epoch"] is not None else f"{'-':>9}"
        sk_acc = f"{row['sklearn_test_accuracy']:11.2%}" if row["sklearn_test_accuracy"] is not None else f"{'-':>11}"
        print(f"{row['arch']:16} {row['mlpspec_s_per_epoch']:9.2f} {row['torch_s_per_epoch']:8.2f} "
              f"{row['ratio']:6.2f} {sk_time} {row['mlpspec_test_accuracy']:11.2%} "
              f"{row['torch_test_accuracy']:9.2%} {sk_acc}")
    for note in notes:
        print(f"note: {note}")
    print(f"targets (ratio at most): {targets}; met: {met}")
    print(json.dumps({"epochs": args.epochs, "batch_size": BATCH_SIZE, "results": rows,
                      "targets": targets, "met": met, "threads": threads, "versions": versions,
                      "load_before": round(load_before, 2), "notes": notes}))


if __name__ == "__main__":
    main()
