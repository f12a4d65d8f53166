"""A real Dask cluster on 127.0.0.1 for tests: a scheduler and workers as separate processes.

    with LocalDaskCluster(tmp_path, workers=2) as cluster:
        cluster.address            # tcp://127.0.0.1:<free port>
        cluster.kill_worker(pid)   # SIGKILL, as a machine that dies

Workers run without a nanny (a nanny would restart a killed worker) and each
with its own `MLPSPEC_WORKER_CACHE`, so nothing but the network connects them
to the driver. Everything started is stopped on exit, within bounded time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalDaskCluster:
    def __init__(self, folder: Path, workers: int = 2):
        self.folder, self.count = Path(folder), workers
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen] = []
        self.worker_caches = [self.folder / f"worker-cache-{i}" for i in range(workers)]

    def __enter__(self) -> "LocalDaskCluster":
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        port = self.address.rsplit(":", 1)[1]
        try:
            self._start(dask + ["--host", "127.0.0.1", "--port", port, "--no-dashboard"], "scheduler", {})
            for i, cache in enumerate(self.worker_caches):
                self._start([sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                             "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                             "--local-directory", str(self.folder / f"dask-{i}")],
                            f"worker-{i}", {"MLPSPEC_WORKER_CACHE": str(cache)})
            self.wait_for_workers(self.count)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, command: list[str], name: str, env: dict[str, str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        environment = {**os.environ, **env}
        environment.pop("MLPSPEC_CACHE", None)
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                               env=environment, cwd=self.folder))

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=START_TIMEOUT, set_as_default=False)

    def wait_for_workers(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with self.client() as client:
                    client.wait_for_workers(count, timeout=max(1.0, deadline - time.monotonic()))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def kill_worker(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
