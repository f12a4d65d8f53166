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


def npz_spec(name: str, *, inputs: int, seed: int = 0, data: str = "") -> str:
    """The head of a small spec on local data (`train.npz`, `test.npz`, 3 classes).

    It ends with `[network] inputs = ...`; tests append their layers and
    `[train]`. `data` adds lines to `[data]` (e.g. a `[data.validation]` table).
    """
    return (f'spec_version = 1\nname = "{name}"\nseed = {seed}\n'
            f'[data]\nsource = "npz"\ntrain = "train.npz"\ntest = "test.npz"\nclasses = 3\n'
            f"{data}[network]\ninputs = {inputs}\n")


def relu_mlp(units: int) -> str:
    """The layers after an `npz_spec`: `inputs -> units (ReLU) -> 3`; `[train]` follows."""
    return f"""
[[network.layers]]
type = "dense.v1"
units = {units}
[[network.layers]]
type = "relu.v1"
[[network.layers]]
type = "dense.v1"
units = 3
"""


def momentum_mlp(units: int) -> str:
    """The rest of an `npz_spec`: `relu_mlp(units)`, 3 epochs of momentum SGD."""
    return relu_mlp(units) + """[train]
epochs = 3
batch_size = 32
[train.optimizer]
type = "momentum.v1"
learning_rate = 0.05
"""


_STANDALONE_PREAMBLE = '''\
import importlib.abc, json, sys

class NoMlpspec(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "mlpspec":
            raise ImportError(f"{name} is blocked in this process")
        return None

sys.meta_path.insert(0, NoMlpspec())
import numpy as np
sys.path.insert(0, sys.argv[1])
import infer

'''


def run_standalone_infer(folder: Path, body: str, *args) -> dict:
    """Run `body` with a copy of infer.py in a fresh interpreter where mlpspec cannot be
    imported (the path another program takes); return the JSON it prints.

    `body` sees `infer`, `np`, `json` and `sys`; `sys.argv[2:]` are `args`.
    """
    import json
    import shutil
    import subprocess
    import sys
    import textwrap

    from mlpspec import infer

    elsewhere = folder / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    shutil.copy(infer.__file__, elsewhere / "infer.py")
    (folder / "check.py").write_text(_STANDALONE_PREAMBLE + textwrap.dedent(body))
    done = subprocess.run([sys.executable, "-I", str(folder / "check.py"), str(elsewhere),
                           *map(str, args)], capture_output=True, text=True, cwd=folder, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def invoke(*args) -> object:
    """The `mlpspec` CLI in-process (typer's CliRunner), as a user runs it: it may exit
    with any code, but never with a traceback or an exception other than SystemExit."""
    from typer.testing import CliRunner

    from mlpspec.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result
