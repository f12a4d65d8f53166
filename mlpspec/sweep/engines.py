"""Where trials run: this process, local worker processes, or a Dask cluster.

Every engine takes `{trial index: payload}` and yields `(index, outcome)` as
trials finish, in any order (`mlpspec.sweep.trial`). Leaving the iteration
early (Ctrl-C on the driver) stops the trials still running: what finished
has been yielded, and so stored, already.

- `InProcess`: one trial after another in the driver (`--jobs 1`).
- `LocalPool`: `--jobs N` worker processes on this machine, sharing the
  driver's cache. A worker that dies takes its pool down (the pool cannot say
  which trial it held): the unfinished trials are resubmitted to a fresh pool,
  up to `RETRIES` times.
- `DaskCluster`: `--scheduler tcp://HOST:PORT`. Trials travel as plain
  payloads and come back with their artifacts; when a worker dies, the
  scheduler reruns its task on another worker (Dask's
  `distributed.scheduler.allowed-failures`, 3 by default).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from mlpspec.errors import MlpspecError
from mlpspec.sweep.trial import pin_threads, run_trial

RETRIES = 3
CONNECT_TIMEOUT = 20  # seconds to reach a Dask scheduler


class InProcess:
    remote = False

    def __init__(self, threads: int):
        self.threads = threads
        self.capacity = 1
        self.description = "in this process"

    def results(self, payloads: dict[int, dict]) -> Iterator[tuple[int, dict]]:
        import threadpoolctl

        # Pinned only for the trial: the driver itself is not a dedicated worker.
        with threadpoolctl.threadpool_limits(limits=self.threads, user_api="blas"):
            for index, payload in payloads.items():
                yield index, run_trial(payload)


def _init_worker(threads: int) -> None:
    pin_threads(threads)
    # Ctrl-C in a terminal reaches the whole process group; the driver decides
    # what stops and how, so the workers do not each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalPool:
    remote = False

    def __init__(self, jobs: int, threads: int):
        self.jobs, self.threads = jobs, threads
        self.capacity = jobs
        self.description = f"{jobs} local worker processes, {threads} BLAS thread(s) each"
        self.retried: list[str] = []

    def results(self, payloads: dict[int, dict]) -> Iterator[tuple[int, dict]]:
        pending = dict(payloads)
        for attempt in range(RETRIES + 1):
            # spawn, not fork: the driver may hold BLAS threads and locks a fork would copy.
            executor = ProcessPoolExecutor(max_workers=self.jobs,
                                           mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init_worker, initargs=(self.threads,))
            broken = False
            try:
                futures = {executor.submit(run_trial, payload): index
                           for index, payload in pending.items()}
                waiting = set(futures)
                while waiting and not broken:
                    done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                    for future in done:
                        try:
                            outcome = future.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        index = futures[future]
                        pending.pop(index)
                        yield index, outcome
            finally:
                _stop(executor)
            if not pending:
                return
            self.retried += [pending[i]["label"] for i in pending]
        raise MlpspecError(f"local worker processes died {RETRIES + 1} times; "
                           f"{len(pending)} trials did not finish")


def _stop(executor: ProcessPoolExecutor) -> None:
    """Stop the pool now, running trials included (a pool's shutdown would wait for them)."""
    # ProcessPoolExecutor has no public way to end running tasks; its worker
    # processes are in `_processes` (stable since Python 3.2).
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


class DaskCluster:
    remote = True

    def __init__(self, address: str, threads: int):
        try:
            from distributed import Client
        except ImportError:
            raise MlpspecError("--scheduler needs Dask distributed: "
                               "pip install 'mlpspec[cluster]'") from None
        self.threads = threads
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise MlpspecError(f"--scheduler {address}: cannot reach the Dask scheduler: "
                               f"{error}") from None
        workers = self.client.scheduler_info().get("workers", {})
        self.capacity = max(1, sum(w.get("nthreads", 1) for w in workers.values()))
        self.description = (f"Dask cluster {address}: {len(workers)} workers, "
                            f"{self.capacity} task slots, {threads} BLAS thread(s) per trial")

    def results(self, payloads: dict[int, dict]) -> Iterator[tuple[int, dict]]:
        from distributed import as_completed

        futures = {}
        try:
            for index, payload in payloads.items():
                # pure=False: a trial is an action, never deduplicated by Dask.
                future = self.client.submit(run_trial, payload, pure=False,
                                            key=f"mlpspec-trial-{payload['label']}-{os.getpid()}-{index}")
                futures[future] = index
            for future in as_completed(futures, loop=self.client.loop):
                try:
                    outcome = future.result()
                except Exception as error:  # noqa: BLE001 - e.g. KilledWorker after retries
                    payload = payloads[futures[future]]
                    outcome = {"label": payload["label"], "worker": "?",
                               "error": f"the cluster gave up on the trial: {type(error).__name__}: {error}"}
                yield futures[future], outcome
        finally:
            unfinished = [f for f in futures if not f.done()]
            if unfinished:
                self.client.cancel(unfinished)

    def close(self) -> None:
        self.client.close()
