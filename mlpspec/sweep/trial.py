"""One trial, run wherever an engine sends it: a payload in, an outcome out.

Both are plain dicts of strings, numbers and bytes, so that they cross a
process or a network unchanged (Dask serialises them; no pickled objects of
ours travel):

    payload = {"label": "003-seed1", "spec_text": <resolved spec TOML>,
               "spec_source": "mnist.toml", "keys": {stage: key},
               "threads": 1, "base_dir": "/abs/path" | None,
               "files": {relative path: bytes} | None,   # the spec's local data files
               "cache_dir": "/abs/path" | None}          # None: the worker's own cache
    outcome = {"label", "keys", "status": "ran" | "resumed" | "cached",
               "artifacts": {stage: {"info": {...}, "files": {name: bytes}}} | None,
               "worker": "host:pid"}
    outcome = {"label", "error": "message", "worker"}    # a failed trial

With `cache_dir` the trial writes into that cache (local workers share the
driver's file system). Without it (a cluster: no shared file system is
assumed) it uses a cache of its own on the worker — `$MLPSPEC_WORKER_CACHE`,
else `<tmp>/mlpspec-worker-cache` — so load and preprocess run once per worker
and dataset, and returns the train, evaluate and export entries as bytes for
the driver to store in its own cache. Built-in datasets are fetched by the
worker itself (its `MLPSPEC_MIRRORS`, or the public mirrors); local data files
travel in the payload.

BLAS threads are pinned to `threads` for the whole worker process (every
trial of a sweep asks for the same count, so concurrent trials in one process
agree). Before training, the worker recomputes the stage keys under its own
environment: a worker whose NumPy or BLAS build differs from the driver's
would produce weights that the driver's key does not describe, so the trial
fails with the fields that differ instead of filling the cache with a lie.
"""

from __future__ import annotations

import os
import socket
import tempfile
import traceback
from pathlib import Path, PurePosixPath
from typing import Any

WORKER_CACHE_ENV = "MLPSPEC_WORKER_CACHE"
RETURNED_STAGES = ("train", "evaluate", "export")  # what a run folder needs


def pin_threads(threads: int) -> None:
    """Limit BLAS to `threads` in this process, for good (a worker process is the sweep's)."""
    import threadpoolctl

    threadpoolctl.threadpool_limits(limits=threads, user_api="blas")


def worker_cache_dir() -> Path:
    return Path(os.environ.get(WORKER_CACHE_ENV)
                or Path(tempfile.gettempdir()) / "mlpspec-worker-cache")


def data_files(spec, base_dir: Path) -> dict[str, bytes]:
    """The spec's local data files, by the relative path the spec names; none for built-ins."""
    from mlpspec.errors import MlpspecError
    from mlpspec.spec import model

    if isinstance(spec.data.source, model.BuiltinSource):
        return {}
    files = {}
    for key, name in spec.data.source.files().items():
        if Path(name).is_absolute():
            raise MlpspecError(f"data.{key}: {name}: a cluster worker cannot place an absolute "
                               f"path; give the data file relative to the spec")
        files[name] = (base_dir / name).read_bytes()
    return files


def run_trial(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one trial (see the module docstring); never raises for a user error."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    label = payload["label"]
    from mlpspec.errors import RunInterrupted

    try:
        return {"label": label, "worker": worker, **_run(payload)}
    except RunInterrupted:
        raise  # Ctrl-C in this process (`--jobs 1`): the driver stops the sweep
    except Exception as error:  # noqa: BLE001 - reported to the driver as a failed trial
        from mlpspec.errors import MlpspecError

        message = str(error) if isinstance(error, MlpspecError) else (
            f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        return {"label": label, "worker": worker, "error": message}


def _run(payload: dict[str, Any]) -> dict[str, Any]:
    from mlpspec import compute
    from mlpspec.cache import Cache
    from mlpspec.errors import MlpspecError
    from mlpspec.pipeline import Pipeline
    from mlpspec.progress import Progress
    from mlpspec.spec import parse_spec

    pin_threads(payload["threads"])
    spec = parse_spec(payload["spec_text"], payload["spec_source"])
    with tempfile.TemporaryDirectory(prefix="mlpspec-trial-") as scratch:
        base_dir = Path(payload["base_dir"]) if payload.get("files") is None else \
            _place_files(Path(scratch), payload["files"])
        cache = Cache(Path(payload["cache_dir"]) if payload.get("cache_dir") else worker_cache_dir())
        pipeline = Pipeline(spec, base_dir, cache, Progress())
        if pipeline.keys != payload["keys"]:
            theirs = pipeline.info["train"]["reads"]["compute"]
            raise MlpspecError(
                f"this worker's compute environment {theirs} gives different cache keys "
                f"than the driver's; run workers with the driver's NumPy and BLAS build")
        result = pipeline.run(None)
        status = next(r.status for r in result.stages if r.stage == "train")
        artifacts = None
        if not payload.get("cache_dir"):
            artifacts = {stage: _entry_bytes(cache, stage, pipeline.keys[stage])
                         for stage in RETURNED_STAGES}
    return {"keys": dict(pipeline.keys), "status": status, "artifacts": artifacts,
            "environment": compute.environment()}


def _place_files(scratch: Path, files: dict[str, bytes]) -> Path:
    """Write the data files so that their relative paths resolve; the base folder."""
    # `../data/train.npz` must land inside the scratch folder: start deep enough.
    depth = max((PurePosixPath(Path(name).as_posix()).parts.count("..") for name in files),
                default=0)
    base = scratch.joinpath("base", *(["d"] * depth))
    base.mkdir(parents=True)  # `d/../x` needs `d` to exist
    for name, blob in files.items():
        target = (base / name).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    return base


def _entry_bytes(cache, stage: str, key: str) -> dict[str, Any]:
    entry = cache.get(stage, key)
    manifest = dict(entry.manifest)
    names = list(manifest.pop("files"))
    for field in ("stage", "key", "created"):
        manifest.pop(field, None)
    return {"info": manifest, "files": {name: entry.file(name).read_bytes() for name in names}}


def store_artifacts(cache, keys: dict[str, str], artifacts: dict[str, Any]) -> None:
    """Put the entries a remote trial returned into the driver's `cache` (verified on read)."""
    for stage in RETURNED_STAGES:
        part = artifacts[stage]

        def write(folder: Path, files=part["files"]):
            for name, blob in files.items():
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)

        cache.put(stage, keys[stage], write, part["info"])
