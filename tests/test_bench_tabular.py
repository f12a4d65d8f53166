"""tools/bench_tabular.py: its mlpspec side runs the user's path (no scikit-learn needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mlpspec.spec import parse_spec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_tabular", REPO / "tools" / "bench_tabular.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_mlpspec_side_runs_on_a_tiny_dataset(bench, tmp_path, monkeypatch):
    monkeypatch.setitem(bench.RECIPE, "epochs", 200)  # the recipe otherwise; kept short
    # Three well separated classes with string names, features on different scales.
    generator = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    X = generator.normal(size=(90, 4)) + 4.0 * y[:, None]
    X[:, 0] *= 1000.0
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    train, test = bench.split(y, seed=0, stratify=True)
    assert len(test) == 24 and np.bincount(y[test]).tolist() == [8, 8, 8]
    assert not set(train) & set(test)
    result = bench.run_mlpspec(tmp_path, "tiny", seed=0, X_train=X[train], labels_train=names[train],
                               X_test=X[test], labels_test=names[test],
                               features=bench.column_names(["a b", "c", "d", "e"], 4), outputs=3,
                               hidden=(16,), regression=False)
    assert result["score"] >= 0.9
    assert 1 <= result["epochs_run"] <= bench.RECIPE["epochs"] and result["train_seconds"] > 0
    assert (tmp_path / "run-spec" / "model.mlpm").is_file()
    assert (tmp_path / "train.csv").read_text().splitlines()[0] == "a_b,c,d,e,label"


@pytest.mark.parametrize("regression", [False, True])
def test_bench_spec_is_a_valid_spec(bench, regression):
    spec = parse_spec(bench.spec_text("x", seed=3, inputs=10, outputs=1 if regression else 4,
                                      hidden=(100, 50), regression=regression), "<bench>")
    assert spec.task == ("regression" if regression else "classification")
    assert spec.train.early_stopping.patience == bench.RECIPE["patience"]
    assert spec.data.validation.size == bench.RECIPE["validation"]
