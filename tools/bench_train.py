"""Training speed of mlpspec against PyTorch CPU on MNIST, run alternately so noise shows.

    python tools/bench_train.py [--epochs 3] [--rounds 5] [--arch 784-256-128-10]... \\
        [--pairing epoch|run] [--peer torch|mlpspec] [--torch-python PATH] [--threads 2]

Both sides train each architecture (ReLU hidden layers) with one recipe: the
full 60k training set scaled to [0, 1], float32, He-normal weights and zero
biases, softmax cross-entropy, batch 128, SGD with momentum 0.9 (PyTorch's
convention) at a constant 0.05, reshuffled every epoch; test accuracy on the
full 10k test set.

Why it can be trusted on a shared machine:

- every run is its own subprocess (`--worker mlpspec`, or tools/_torch_mlp.py
  in the torch interpreter), so neither side warms caches, thread pools or
  the allocator for the other;
- the sides alternate, and what is compared is paired in time. With
  `--pairing epoch` (the default) each round starts both sides' processes
  together and runs their epochs in turn, one side computing while the other
  waits on a pipe: epoch 1 of A, epoch 1 of B, epoch 2 of B, epoch 2 of A ...
  (AB BA AB ..., the first side alternating between rounds), each after a
  PAUSE so the other side's threads have stopped spinning; each epoch pair
  gives a ratio (mlpspec / torch), `--epochs` x `--rounds` of them. With
  `--pairing run` the sides' whole runs alternate (AB BA AB ...) and each
  round gives one ratio of the runs' median epochs. The host's slow
  stretches last seconds (a 2-thread GEMM falls from ~200 to ~140 GFLOP/s
  for 3-10 s at a time), so pairing epochs seconds apart rather than runs
  tens of seconds apart lets fewer of them fall on one side only;
- it reports medians with their spread (min-max) of s/epoch and of the
  ratio, and the 1-minute load average before and after;
- `--peer mlpspec` runs mlpspec against itself (an A/A run): the ratio's
  scatter around 1.0 is the benchmark's own noise on this machine, the
  yardstick for any single figure it prints;
- each side's s/epoch is also given as a fraction of the physical floor: the
  epoch's GEMM FLOPs (forward; backward without the input gradient of the
  first layer) divided by this machine's float32 GEMM peak, measured in the
  same run (NumPy's BLAS, 2048^3 sgemm, the best over measurements at the
  start, after every round and at the end);
- the JSON (the last line printed) records both sides' BLAS/OpenMP pools
  (threadpoolctl: library, version, kernel architecture, threads), versions
  and the raw per-epoch times of every run.

A run's s/epoch is the median of its epochs. PyTorch is never a dependency of
mlpspec: it lives in the interpreter given by `--torch-python` (default:
`$MLPSPEC_TORCH_PYTHON`, else `/tmp/peer/bin/python`, else a venv made once at
`${TMPDIR:-/tmp}/mlpspec-bench-venv`) with torch, numpy and threadpoolctl.
MNIST comes through mlpspec's loader (`MLPSPEC_MIRRORS` defaults to
`../shared/data/mnist`) and reaches the workers as `.npy` files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import numpy as np

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"
ARCHS = ("784-256-128-10", "784-512-256-10", "784-800-800-10")
TARGET_RATIO = 0.8  # issue 12: mlpspec at least 1.25x faster than PyTorch
TARGET_ACCURACY_GAP = 0.003  # and test accuracies within 0.3 pt
BATCH_SIZE, LEARNING_RATE, MOMENTUM = 128, 0.05, 0.9
TORCH_REQUIREMENTS = ("torch==2.13.0", "numpy", "threadpoolctl")
TRAIN_SAMPLES = 60_000
PAUSE = 0.3  # seconds before each lockstep epoch: the other side's threads stop spinning

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


def sizes_of(arch: str) -> list[int]:
    return [int(units) for units in arch.split("-")]


def bench_spec(arch: str, epochs: int):
    """The benchmark recipe for `arch` ("784-256-128-10") as a validated mlpspec spec."""
    from mlpspec.spec import parse_spec

    sizes = sizes_of(arch)
    layers = [f'{{ type = "dense.v1", units = {units}, init = "he_normal" }}, {{ type = "relu.v1" }}'
              for units in sizes[1:-1]]
    layers.append(f'{{ type = "dense.v1", units = {sizes[-1]}, init = "he_normal" }}')
    text = SPEC.format(arch=arch, inputs=sizes[0], layers=", ".join(layers), epochs=epochs,
                       batch_size=BATCH_SIZE, lr=LEARNING_RATE, momentum=MOMENTUM)
    return parse_spec(text, f"<bench {arch}>")


def load_data(spec):
    """MNIST prepared as the spec says: 60k training rows, no validation split."""
    from mlpspec.data.prepare import load_raw, prepare

    raw = load_raw(spec.data, REPO)
    # prepare() cannot flatten the empty validation split of take_from = "none"
    # (reshape(0, -1) is ambiguous), so the samples arrive flattened already.
    flat = attrs.evolve(raw, x_train=raw.x_train.reshape(len(raw.x_train), -1),
                        x_test=raw.x_test.reshape(len(raw.x_test), -1))
    data_spec = attrs.evolve(spec.data, preprocess=attrs.evolve(spec.data.preprocess, flatten=False))
    return prepare(flat, data_spec, spec.seed, spec.train.precision)


def epoch_gemm_flops(sizes: list[int], samples: int = TRAIN_SAMPLES) -> float:
    """GEMM FLOPs of one epoch: per layer forward X@W and dW = X.T@dY, plus dX = dY@W.T
    for every layer but the first (its input gradient is never needed)."""
    flops = 0.0
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        products = 2 if i == 0 else 3
        flops += products * 2.0 * samples * n_in * n_out
    return flops


def blas_pools() -> list[dict]:
    """This process's BLAS and OpenMP pools as threadpoolctl reports them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "architecture", "threading_layer", "num_threads",
            "prefix")
    return [{key: info.get(key) for key in keys} for info in threadpool_info()]


def gemm_peak(seconds: float = 3.0, size: int = 2048) -> float:
    """This machine's float32 GEMM rate in FLOP/s: the best of repeated size^3 sgemms in NumPy."""
    rng = np.random.default_rng(0)
    A = rng.random((size, size), dtype=np.float32)
    B = rng.random((size, size), dtype=np.float32)
    C = np.empty_like(A)
    np.matmul(A, B, out=C)  # warm the pool and the pages
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        np.matmul(A, B, out=C)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


# ------------------------------------------------------------------ the workers


def lockstep_wait() -> None:
    """Block until the orchestrator says "go" on stdin (`--lockstep`)."""
    line = sys.stdin.readline().strip()
    if line != "go":
        raise SystemExit(f"bench_train.py --lockstep: expected 'go' on stdin, got {line!r}")


def worker_mlpspec(data_dir: Path, arch: str, epochs: int, threads: int, lockstep: bool = False) -> dict:
    """One mlpspec run (in its own process): `fit` as a user calls it, then the test accuracy.

    `lockstep`: print "ready", run each epoch on a "go" line from stdin and
    print its seconds (as JSON) when it ends; the wait falls between epochs,
    outside the time `fit` records for each.
    """
    from threadpoolctl import threadpool_limits

    from mlpspec.compute import environment
    from mlpspec.data.prepare import Prepared
    from mlpspec.train import build_loss, evaluate_split, fit

    spec = bench_spec(arch, epochs)
    data = Prepared.load(data_dir)

    def epoch_done(record) -> None:
        print(json.dumps({"epoch_seconds": record.seconds}), flush=True)
        if record.epoch < epochs:
            lockstep_wait()

    with threadpool_limits(threads, user_api="blas"):
        pools = blas_pools()
        if lockstep:
            print("ready", flush=True)
            lockstep_wait()
        result = fit(spec, data, on_epoch=epoch_done if lockstep else None)
    seconds = [record.seconds for record in result.history]
    _, accuracy = evaluate_split(result.network, build_loss(spec), data.x_test, data.y_test)
    return {"s_per_epoch": statistics.median(seconds), "epoch_seconds": seconds,
            "train_loss": result.history[-1].train_loss, "test_accuracy": accuracy,
            "pools": pools, "numpy": np.__version__, "compute": environment()}


def side_command(side: str, python: str, data_dir: Path, arch: str, epochs: int, threads: int,
                 lockstep: bool) -> list[str]:
    """The worker command of `side`: "mlpspec", "torch", or "mlpspec-peer" (`--peer mlpspec`)."""
    if side.startswith("mlpspec"):
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(data_dir),
                   "--arch", arch, "--epochs", str(epochs), "--threads", str(threads)]
    else:
        command = [python, str(TOOLS / "_torch_mlp.py"), str(data_dir), arch, "--epochs", str(epochs),
                   "--threads", str(threads),
                   "--batch-size", str(BATCH_SIZE), "--lr", str(LEARNING_RATE),
                   "--momentum", str(MOMENTUM)]
    return command + (["--lockstep"] if lockstep else [])


def _result(side: str, last_line: str) -> dict:
    out = json.loads(last_line)
    return out if side.startswith("mlpspec") else out["torch"]


def run_side(side: str, python: str, data_dir: Path, arch: str, epochs: int, threads: int,
             peer: str = "torch") -> dict:
    """One whole run of one side (`--pairing run`)."""
    side = "mlpspec-peer" if side == "torch" and peer == "mlpspec" else side
    command = side_command(side, python, data_dir, arch, epochs, threads, lockstep=False)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return _result(side, done.stdout.strip().splitlines()[-1])


def run_lockstep(order: tuple[str, str], python: str, data_dir: Path, arch: str, epochs: int,
                 threads: int, peer: str = "torch") -> dict[str, dict]:
    """One run of each side, both processes alive at once, their epochs alternating (`--pairing epoch`).

    Epoch i runs on one side, then epoch i on the other, the sides taking
    turns at going first (AB BA AB ... from `order`); only one side computes
    at a time, the other waits on a pipe. Before each epoch the orchestrator
    sleeps PAUSE seconds, so the BLAS/OpenMP threads of the side that just
    finished have stopped spinning (OpenBLAS spins ~0.1 s after a call).
    """
    command = {"mlpspec": "mlpspec", "torch": "mlpspec-peer" if peer == "mlpspec" else "torch"}
    processes = {side: subprocess.Popen(side_command(command[side], python, data_dir, arch, epochs,
                                                     threads, lockstep=True),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for side in order}
    try:
        def read(side: str) -> str:
            line = processes[side].stdout.readline()
            if not line:
                raise RuntimeError(f"bench_train.py: the {side} worker ended early "
                                   f"(exit {processes[side].wait()})")
            return line.strip()

        for side in order:
            if read(side) != "ready":
                raise RuntimeError(f"bench_train.py: the {side} worker did not report ready")
        for epoch in range(epochs):
            for side in order if epoch % 2 == 0 else order[::-1]:
                time.sleep(PAUSE)
                processes[side].stdin.write("go\n")
                processes[side].stdin.flush()
                json.loads(read(side))  # {"epoch_seconds": ...}; the final JSON repeats them
        results = {side: _result(command[side], read(side)) for side in order}
        for side, process in processes.items():
            if process.wait() != 0:
                raise RuntimeError(f"bench_train.py: the {side} worker failed (exit {process.returncode})")
        return results
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def torch_python(given: str | None) -> str:
    """The interpreter that runs the peer: `given`, `$MLPSPEC_TORCH_PYTHON`, /tmp/peer, or a venv."""
    given = given or os.environ.get("MLPSPEC_TORCH_PYTHON")
    if given:
        return given
    for venv in (Path("/tmp/peer"), Path(os.environ.get("TMPDIR", "/tmp")) / "mlpspec-bench-venv"):
        python = venv / "bin" / "python"
        probe = [str(python), "-c", "import torch, threadpoolctl"]
        if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
            return str(python)
    print(f"creating {venv} with {' '.join(TORCH_REQUIREMENTS)} ...", file=sys.stderr)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TORCH_REQUIREMENTS],
                   check=True, stdout=sys.stderr)
    return str(python)


# ------------------------------------------------------------------ the report


def spread(values: list[float], digits: int = 3) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def paired(run: dict, pairing: str) -> list[float]:
    """A run's units of comparison: its epochs (`epoch` pairing) or its median epoch (`run`)."""
    return list(run["epoch_seconds"]) if pairing == "epoch" else [run["s_per_epoch"]]


def summarise(arch: str, runs: dict[str, list[dict]], peak: float, pairing: str) -> dict:
    ours, theirs = runs["mlpspec"], runs["torch"]
    floor = epoch_gemm_flops(sizes_of(arch)) / peak
    ratios = [a / b for ours_run, theirs_run in zip(ours, theirs)
              for a, b in zip(paired(ours_run, pairing), paired(theirs_run, pairing))]
    row = {"arch": arch, "floor_s_per_epoch": round(floor, 3), "ratio": spread(ratios),
           "pairs": len(ratios)}
    for side, side_runs in runs.items():
        seconds = [s for run in side_runs for s in paired(run, pairing)]
        row[side] = {
            "s_per_epoch": spread(seconds),
            "floor_fraction": round(floor / statistics.median(seconds), 3),
            "test_accuracy": spread([run["test_accuracy"] for run in side_runs], 4),
            "epoch_seconds": [[round(s, 3) for s in run["epoch_seconds"]] for run in side_runs],
        }
    row["accuracy_gap"] = round(abs(row["mlpspec"]["test_accuracy"]["median"]
                                    - row["torch"]["test_accuracy"]["median"]), 4)
    row["met"] = (row["ratio"]["median"] <= TARGET_RATIO
                  and row["accuracy_gap"] <= TARGET_ACCURACY_GAP)
    return row


def print_table(rows: list[dict], peak: float, epochs: int, rounds: int, pairing: str,
                peer: str = "torch") -> None:
    if pairing == "epoch":
        how = (f"epochs alternating AB BA ... in each round; s/epoch and ratio median [min-max] "
               f"over the {rows[0]['pairs']} epoch pairs")
    else:
        how = "runs alternating AB BA ...; s/epoch and ratio median [min-max] over the rounds"
    print(f"{epochs} epochs x {rounds} rounds, batch {BATCH_SIZE}, {how}; float32 GEMM peak "
          f"{peak / 1e9:.0f} GFLOP/s")
    other = "torch" if peer == "torch" else "peer (mlpspec)"
    print(f"{'architecture':16} {'mlpspec s':>18} {other + ' s':>18} {'ratio':>17} {'floor s':>7} "
          f"{'floor% ml':>9} {'floor% pt':>9} {'acc ml':>7} {'acc pt':>7}")
    for row in rows:
        def cell(stats, width=18, fmt="{:.2f}"):
            text = f"{fmt.format(stats['median'])} [{fmt.format(stats['min'])}-{fmt.format(stats['max'])}]"
            return f"{text:>{width}}"
        print(f"{row['arch']:16} {cell(row['mlpspec']['s_per_epoch'])} {cell(row['torch']['s_per_epoch'])} "
              f"{cell(row['ratio'], 17)} {row['floor_s_per_epoch']:7.2f} "
              f"{row['mlpspec']['floor_fraction']:9.0%} {row['torch']['floor_fraction']:9.0%} "
              f"{row['mlpspec']['test_accuracy']['median']:7.2%} {row['torch']['test_accuracy']['median']:7.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="runs of each side (default 5: a median of 5 paired ratios stands a "
                             "burst of host noise in two of them)")
    parser.add_argument("--arch", action="append", help=f"architecture (repeatable; default {', '.join(ARCHS)})")
    parser.add_argument("--torch-python", help="python with torch and threadpoolctl")
    parser.add_argument("--threads", type=int, default=2,
                        help="BLAS threads of mlpspec and torch threads (default 2, the cores)")
    parser.add_argument("--pairing", choices=("epoch", "run"), default="epoch",
                        help="what is paired: each side's epochs, alternating within a round "
                             "(default), or each side's whole run (runs alternating)")
    parser.add_argument("--peer", choices=("torch", "mlpspec"), default="torch",
                        help="the other side; mlpspec against itself (an A/A run) shows the "
                             "benchmark's own noise: its ratios scatter around 1.0")
    parser.add_argument("--peak-seconds", type=float, default=3.0,
                        help="seconds of 2048^3 sgemms at the start and the end for the GEMM peak "
                             "(a third of it after every round; default 3)")
    parser.add_argument("--worker", type=Path, metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--lockstep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 1 or args.rounds < 1:
        parser.error("--epochs and --rounds: expected positive integers")
    if not args.peak_seconds > 0:
        parser.error("--peak-seconds: expected a positive number of seconds")
    archs = args.arch or list(ARCHS)
    if args.worker is not None:
        print(json.dumps(worker_mlpspec(args.worker, archs[0], args.epochs, args.threads,
                                        args.lockstep)))
        return
    os.environ.setdefault("MLPSPEC_MIRRORS", str(REPO.parent / "shared" / "data" / "mnist"))
    python = torch_python(args.torch_python) if args.peer == "torch" else sys.executable
    load_before = os.getloadavg()[0]

    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="mlpspec-bench-") as tmp:
        data_dir = Path(tmp)
        load_data(bench_spec(archs[0], args.epochs)).save(data_dir)
        peaks = [gemm_peak(seconds=args.peak_seconds)]
        for arch in archs:
            results[arch] = {"mlpspec": [], "torch": []}
            for round_ in range(args.rounds):
                order = ("mlpspec", "torch") if round_ % 2 == 0 else ("torch", "mlpspec")
                if args.pairing == "epoch":
                    print(f"{arch} round {round_ + 1}/{args.rounds}: {' and '.join(order)}, "
                          f"epochs alternating ...", file=sys.stderr)
                    both = run_lockstep(order, python, data_dir, arch, args.epochs, args.threads,
                                        args.peer)
                    for side in order:
                        results[arch][side].append(both[side])
                    peaks.append(gemm_peak(seconds=args.peak_seconds / 3))  # the best of many
                    continue
                for side in order:
                    print(f"{arch} round {round_ + 1}/{args.rounds}: {side} ...", file=sys.stderr)
                    results[arch][side].append(run_side(side, python, data_dir, arch, args.epochs,
                                                        args.threads, args.peer))
                peaks.append(gemm_peak(seconds=args.peak_seconds / 3))  # the best of many: load only lowers it
        peaks.append(gemm_peak(seconds=args.peak_seconds))
    peak = max(peaks)
    load_after = os.getloadavg()[0]

    rows = [summarise(arch, runs, peak, args.pairing) for arch, runs in results.items()]
    first = next(iter(results.values()))
    environment = {
        "mlpspec": {"pools": first["mlpspec"][0]["pools"], "numpy": first["mlpspec"][0]["numpy"],
                    "compute": first["mlpspec"][0]["compute"]},
        "torch": {"pools": first["torch"][0].get("pools"), "threads": first["torch"][0].get("threads"),
                  "version": first["torch"][0].get("version"), "numpy": first["torch"][0].get("numpy")},
        "cpus": os.cpu_count(),
    }
    print_table(rows, peak, args.epochs, args.rounds, args.pairing, args.peer)
    print(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}; "
          f"GEMM peak measurements {[round(p / 1e9) for p in peaks]} GFLOP/s")
    if any(row[side]["floor_fraction"] > 1 for row in rows for side in ("mlpspec", "torch")):
        print("warning: a side ran faster than the floor, so every GEMM peak measurement was "
              "slowed by other load; the floor fractions are not to be trusted")
    met = all(row["met"] for row in rows)
    print(f"target: ratio median <= {TARGET_RATIO} and accuracy gap <= {TARGET_ACCURACY_GAP:.1%} "
          f"for every network; met: {met}")
    print(json.dumps({"epochs": args.epochs, "rounds": args.rounds, "pairing": args.pairing,
                      "peer": args.peer,
                      "batch_size": BATCH_SIZE,
                      "threads": args.threads,
                      "gemm_peak_flops": [round(p) for p in peaks], "results": rows, "met": met,
                      "environment": environment, "load_before": round(load_before, 2),
                      "load_after": round(load_after, 2)}))


if __name__ == "__main__":
    main()
