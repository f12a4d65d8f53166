"""The compute environment (NumPy, BLAS, thread count) is part of the train key and the run record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpspec import compute
from mlpspec.cache import Cache
from mlpspec.cli import app
from mlpspec.errors import RunInterrupted
from mlpspec.pipeline import Pipeline, stage_keys
from mlpspec.progress import Progress
from mlpspec.spec import load_spec

from conftest import momentum_mlp, npz_spec


def spec_text(inputs: int) -> str:
    return npz_spec("env", inputs=inputs, seed=2,
                    data='[data.validation]\ntake_from = "train"\nsize = 0.2\n') + momentum_mlp(24)


def write_project(folder: Path, side: int) -> Path:
    """`env.toml` and three-class npz data of side x side images (bright corners)."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 256), ("test", 96)):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 60, (n, side, side))
        half = side // 2
        for cls, (r, c) in enumerate([(0, 0), (half, half), (0, half)]):
            x[y == cls, r:r + half, c:c + half] += 150
        np.savez(folder / f"{name}.npz", x=x.astype(np.uint8), y=y)
    (folder / "env.toml").write_text(spec_text(side * side))
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path, 8)


ONE = {"numpy": "2.0.0", "blas": "openblas 0.3.27", "blas_architecture": "Haswell",
       "blas_threading_layer": "pthreads", "blas_threads": 1}
TWO = {**ONE, "blas_threads": 2}


def pretend(monkeypatch, environment: dict) -> None:
    monkeypatch.setattr(compute, "environment", lambda: dict(environment))


def run(project: Path, progress: Progress | None = None):
    spec = load_spec(project / "env.toml")
    return Pipeline(spec, project, Cache(project / "cache"), progress or Progress()).run(project / "run")


def statuses(result) -> dict[str, str]:
    return {record.stage: record.status for record in result.stages}


def test_environment_is_plain_json_naming_numpy_and_the_blas():
    found = compute.environment()
    assert json.loads(json.dumps(found)) == found
    assert found["numpy"] == np.__version__
    assert "blas" in found


def test_only_the_train_key_and_its_consumers_follow_the_environment(project, monkeypatch):
    spec = load_spec(project / "env.toml")
    pretend(monkeypatch, TWO)
    two, info = stage_keys(spec, project)
    assert info["train"]["reads"]["compute"] == TWO
    pretend(monkeypatch, ONE)
    one, _ = stage_keys(spec, project)
    assert one["load"] == two["load"] and one["preprocess"] == two["preprocess"]
    assert one["train"] != two["train"]
    assert one["evaluate"] != two["evaluate"] and one["export"] != two["export"]
    pretend(monkeypatch, {**TWO, "blas_architecture": "SkylakeX"})
    assert stage_keys(spec, project)[0]["train"] not in (one["train"], two["train"])


def test_cache_explain_names_the_thread_count(project, monkeypatch):
    monkeypatch.chdir(project)
    pretend(monkeypatch, TWO)
    runner = CliRunner()
    assert runner.invoke(app, ["run", "env.toml", "-q"]).exit_code == 0
    assert runner.invoke(app, ["run", "env.toml"]).output.count("cached") >= 5
    pretend(monkeypatch, ONE)
    explained = runner.invoke(app, ["cache", "explain", "env.toml"])
    assert explained.exit_code == 0, explained.output
    assert "compute.blas_threads: 2 -> 1" in explained.output
    ran = runner.invoke(app, ["run", "env.toml"])
    assert "[preprocess] cached" in ran.output and "[train] running" in ran.output


def test_the_fused_update_path_is_part_of_the_train_key(project, monkeypatch):
    """A model trained with the fused SGD/momentum step (other roundings) is not reused by a
    machine whose NumPy has no directly callable OpenBLAS, and `cache explain` says why."""
    from mlpspec.nn import blas

    assert compute.environment()["fused_updates"] is blas.AVAILABLE
    monkeypatch.chdir(project)
    pretend(monkeypatch, {**TWO, "fused_updates": True})
    runner = CliRunner()
    assert runner.invoke(app, ["run", "env.toml", "-q"]).exit_code == 0
    pretend(monkeypatch, {**TWO, "fused_updates": False})
    explained = runner.invoke(app, ["cache", "explain", "env.toml"])
    assert explained.exit_code == 0, explained.output
    assert "compute.fused_updates: true -> false" in explained.output.lower()
    ran = runner.invoke(app, ["run", "env.toml"])
    assert "[preprocess] cached" in ran.output and "[train] running" in ran.output


def test_the_run_records_the_environment(project, monkeypatch):
    pretend(monkeypatch, TWO)
    result = run(project)
    assert result.metrics["compute"] == TWO
    assert json.loads((project / "run" / "metrics.json").read_text())["compute"] == TWO


class InterruptAt(Progress):
    def __init__(self, epoch: int, batch: int):
        self.at = (epoch, batch)

    def step(self, epoch, batch, loss, accuracy):
        if (epoch, batch) == self.at:
            raise KeyboardInterrupt


def test_a_checkpoint_resumes_only_under_the_environment_that_wrote_it(project, monkeypatch):
    pretend(monkeypatch, TWO)
    with pytest.raises(RunInterrupted, match="kept a checkpoint after epoch 1"):
        run(project, InterruptAt(2, 3))
    pretend(monkeypatch, ONE)
    assert statuses(run(project))["train"] == "ran"  # not resumed from the 2-thread checkpoint
    assert len(list((project / "cache" / "checkpoints").iterdir())) == 1  # that one is still kept
    pretend(monkeypatch, TWO)
    assert statuses(run(project))["train"] == "resumed"
    assert not list((project / "cache" / "checkpoints").iterdir())


# ------------------------------------------------------------ real thread counts

# One epoch of 784-64-3 on 256 random samples in batches of 128: the first layer's
# products (128, 784) @ (784, 64) are large enough for OpenBLAS to use both threads.
FIT_SCRIPT = """
import hashlib, json, sys
import numpy as np
from mlpspec import compute
from mlpspec.data.prepare import Prepared, Scaling, one_hot
from mlpspec.spec import parse_spec
from mlpspec.train import fit

spec = parse_spec(sys.argv[1], "env.toml",
                  ["train.epochs=1", "train.batch_size=128", "network.layers[0].units=64"])
rng = np.random.default_rng(0)
x = rng.random((256, 784), dtype=np.float32)
y = rng.integers(0, 3, 256)
none = np.zeros((0, 784), np.float32)
data = Prepared(x, y, one_hot(y, 3, np.dtype(np.float32)), none, y[:0], none, y[:0], 3,
                ("a", "b", "c"), (784,), Scaling("none", np.array(0.0), np.array(1.0)))
digest = hashlib.sha256()
for name, array in sorted(fit(spec, data).network.state_dict().items()):
    digest.update(name.encode() + array.tobytes())
print(json.dumps({"compute": compute.environment(), "weights": digest.hexdigest()}))
"""


def fit_in_a_fresh_process(threads: int) -> dict:
    """`fit` on the spec above with OPENBLAS_NUM_THREADS=threads: its environment and weights' hash."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", FIT_SCRIPT, spec_text(784)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_each_thread_count_reproduces_itself_bit_for_bit(record_property):
    runs = {(threads, attempt): fit_in_a_fresh_process(threads) for threads in (1, 2) for attempt in (1, 2)}
    for threads in (1, 2):
        assert runs[threads, 1] == runs[threads, 2], f"OPENBLAS_NUM_THREADS={threads}: a rerun differs"
    one, two = runs[1, 1]["compute"], runs[2, 1]["compute"]
    if one.get("blas", "").startswith("openblas"):  # OpenBLAS caps the count at the cores it has
        assert one["blas_threads"] == 1 and (two["blas_threads"] == 2 or os.cpu_count() == 1)
    differ = runs[1, 1]["weights"] != runs[2, 1]["weights"]
    record_property("weights_differ_between_1_and_2_threads", differ)
    print(f"1 vs 2 BLAS threads: weights {'differ' if differ else 'are identical'} ({one.get('blas')})")
