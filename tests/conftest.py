"""Shared fixtures: paths to the repo's specs and the local MNIST mirror."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"


def mnist_mirror() -> Path | None:
    """The local copy of MNIST (../shared/data/mnist beside the repo), if present."""
    candidates = [os.environ.get("MLPSPEC_TEST_MNIST"), REPO.parent / "shared/data/mnist",
                  Path("/work/shared/data/mnist")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train-labels-idx1-ubyte.gz").exists():
            return Path(candidate)
    return None


@pytest.fixture
def mnist_env(tmp_path_factory, monkeypatch) -> Path:
    """MLPSPEC_MIRRORS pointing at the local MNIST and a shared data home for the session."""
    mirror = mnist_mirror()
    if mirror is None:
        pytest.skip("the local MNIST copy (../shared/data/mnist) is not available")
    monkeypatch.setenv("MLPSPEC_MIRRORS", str(mirror))
    monkeypatch.setenv("MLPSPEC_HOME", str(_session_home(tmp_path_factory)))
    return mirror


_HOME: list[Path] = []


def _session_home(factory) -> Path:
    if not _HOME:
        _HOME.append(factory.mktemp("mlpspec-home"))
    return _HOME[0]
