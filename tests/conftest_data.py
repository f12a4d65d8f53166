"""Shared helpers for the data tests: synthetic IDX files, a local mirror server,
and the location of the real MNIST copy.

Imported by the test modules (`from conftest_data import ...`); kept out of
`conftest.py` so the data tests stay self-contained.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import numpy as np
import pytest

from mlpspec.data.idx import encode_idx
from mlpspec.data.sources import RemoteFile

MNIST_LABEL_FILES = ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")


def mnist_dir() -> Path | None:
    """The shared real-MNIST folder (`$MLPSPEC_TEST_MNIST` or `<repo>/../shared/data/mnist`)."""
    candidates = []
    if os.environ.get("MLPSPEC_TEST_MNIST"):
        candidates.append(Path(os.environ["MLPSPEC_TEST_MNIST"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
    for candidate in candidates:
        if (candidate / "train-labels-idx1-ubyte.gz").is_file():
            return candidate
    return None


requires_mnist = pytest.mark.skipif(
    mnist_dir() is None,
    reason="real MNIST not found: set MLPSPEC_TEST_MNIST or place it at <repo>/../shared/data/mnist",
)


@attrs.frozen
class SyntheticFile:
    """A small IDX file: its RemoteFile (checksums of the raw payload) and bytes."""

    remote: RemoteFile
    raw: bytes
    gz: bytes


def synthetic_file(filename: str, array: np.ndarray) -> SyntheticFile:
    raw = encode_idx(array)
    remote = RemoteFile(filename, hashlib.sha256(raw).hexdigest(), len(raw))
    return SyntheticFile(remote, raw, gzip.compress(raw, mtime=0))


def tiny_images(seed: int = 0, n: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 4, 4), dtype=np.uint8)


@attrs.frozen
class Route:
    """What the server answers for one path.

    `declared_length` overrides Content-Length (to simulate a transfer cut
    short); `delay` sleeps before answering (to trigger client timeouts).
    """

    body: bytes = b""
    status: int = 200
    declared_length: int | None = None
    delay: float = 0.0


class MirrorServer:
    """A threaded HTTP server on 127.0.0.1 answering from `routes`, counting hits."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                route = server.routes.get(self.path, Route(status=404))
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                length = len(route.body) if route.declared_length is None else route.declared_length
                self.send_header("Content-Length", str(length))
                self.end_headers()
                try:
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, prefix: str = "") -> str:
        """Base URL of a mirror rooted at `/<prefix>/`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/{prefix.strip('/')}/" if prefix else f"http://{host}:{port}/"

    def serve(self, prefix: str, name: str, route: Route) -> None:
        self.routes[f"/{prefix}/{name}" if prefix else f"/{name}"] = route

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def mirror_server():
    server = MirrorServer()
    yield server
    server.close()


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    """An empty MLPSPEC_HOME and no MLPSPEC_MIRRORS."""
    home = tmp_path / "home"
    monkeypatch.setenv("MLPSPEC_HOME", str(home))
    monkeypatch.delenv("MLPSPEC_MIRRORS", raising=False)
    return home
