"""Wall time of one sweep run sequentially, with `--jobs 2`, and on a local Dask cluster.

    python tools/bench_sweep.py [--sweep specs/sweeps/mnist-lr-width.toml] [--workers 2]

Each way starts from an empty cache (and, for Dask, empty worker caches), so
each pays for loading and preparing the data once per seed, as a first sweep
does. The ways:

- sequential: `mlpspec sweep --jobs 1 --threads W`, one trial after another
  with BLAS using all W cores, which is what a shell loop of `mlpspec run`
  does;
- sequential with one BLAS thread (`--threads 1`), the same trials and
  weights as the two below, which isolates what running trials side by
  side gains;
- `--jobs W --threads 1`: W local worker processes, one BLAS thread each;
- Dask: `dask scheduler` and W `dask worker --nthreads 1` processes on
  127.0.0.1, each with its own worker cache (nothing shared with the driver
  but the network), `--scheduler tcp://127.0.0.1:PORT --threads 1`.

It also checks that the last two give the same leaderboard and the same model
bytes per trial (the sequential run uses W BLAS threads, so its weights differ
in the last bits, and its train cache keys differ accordingly). Figures are
wall-clock on a shared machine and noisy. The last line printed is one JSON
object. `MLPSPEC_MIRRORS` defaults to the local MNIST copy in ../shared/data/mnist.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def mlpspec_command() -> list[str]:
    script = Path(sys.executable).parent / "mlpspec"
    return [str(script)] if script.is_file() else [sys.executable, "-c",
                                                    "from mlpspec.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_sweep(sweep: Path, folder: Path, *options: str) -> float:
    command = mlpspec_command() + ["sweep", str(sweep), "-q", "--out", str(folder / "out"),
                                   "--cache-dir", str(folder / "cache"), *options]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def start_cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "MLPSPEC_CACHE"}
    processes = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    for i in range(workers):
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--no-dashboard", "--local-directory", str(folder / f"dask-{i}")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**env, "MLPSPEC_WORKER_CACHE": str(folder / f"worker-cache-{i}")}))
    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(address, timeout=10, set_as_default=False) as client:
                client.wait_for_workers(workers, timeout=60)
            return address, processes
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def models(folder: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((folder / "out" / "runs").glob("*/model.mlpm"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=REPO / "specs" / "sweeps" / "mnist-lr-width.toml")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("MLPSPEC_MIRRORS", str(REPO.parent / "shared" / "data" / "mnist"))
    w = args.workers
    with tempfile.TemporaryDirectory(prefix="mlpspec-bench-sweep-") as scratch:
        root = Path(scratch)
        seconds = {}
        seconds["sequential"] = timed_sweep(args.sweep, root / "seq", "--jobs", "1", "--threads", str(w))
        print(f"sequential (1 process, {w} BLAS threads): {seconds['sequential']:.1f} s", flush=True)
        seconds["sequential_1"] = timed_sweep(args.sweep, root / "seq1", "--jobs", "1", "--threads", "1")
        print(f"sequential (1 process, 1 BLAS thread):  {seconds['sequential_1']:.1f} s", flush=True)
        seconds["jobs"] = timed_sweep(args.sweep, root / "jobs", "--jobs", str(w), "--threads", "1")
        print(f"--jobs {w} (1 BLAS thread each):         {seconds['jobs']:.1f} s", flush=True)
        address, processes = start_cluster(root / "dask", w)
        try:
            seconds["dask"] = timed_sweep(args.sweep, root / "dask", "--scheduler", address, "--threads", "1")
        finally:
            stop(processes)
        print(f"Dask, scheduler + {w} workers on 127.0.0.1: {seconds['dask']:.1f} s", flush=True)
        trials = len(models(root / "jobs"))
        same_board = ((root / "jobs" / "out" / "leaderboard.txt").read_text()
                      == (root / "dask" / "out" / "leaderboard.txt").read_text())
        same_bytes = models(root / "jobs") == models(root / "dask")
    print(f"speedup over sequential ({w} BLAS threads): --jobs {w} x{seconds['sequential'] / seconds['jobs']:.2f}, "
          f"Dask x{seconds['sequential'] / seconds['dask']:.2f}; over sequential with 1 BLAS thread: "
          f"--jobs {w} x{seconds['sequential_1'] / seconds['jobs']:.2f}, "
          f"Dask x{seconds['sequential_1'] / seconds['dask']:.2f}; --jobs and Dask give the same "
          f"leaderboard: {same_board}, the same model bytes for all {trials} trials: {same_bytes}")
    print(json.dumps({"sweep": str(args.sweep), "trials": trials, "workers": w,
                      "sequential_s": round(seconds["sequential"], 2),
                      "sequential_1_thread_s": round(seconds["sequential_1"], 2),
                      "jobs_s": round(seconds["jobs"], 2), "dask_s": round(seconds["dask"], 2),
                      "speedup_jobs": round(seconds["sequential"] / seconds["jobs"], 3),
                      "speedup_dask": round(seconds["sequential"] / seconds["dask"], 3),
                      "speedup_jobs_vs_1_thread": round(seconds["sequential_1"] / seconds["jobs"], 3),
                      "same_leaderboard": same_board, "same_model_bytes": same_bytes}))


if __name__ == "__main__":
    main()
