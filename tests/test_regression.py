"""Regression (`task = "regression"`) end to end: spec checks, `fit`, the CLI
(`run`, `evaluate --on SPEC`, `predict`, `inspect`, `export`), the model file
read back by a copy of infer.py in a process where mlpspec cannot be imported,
and onnxruntime. The data are small synthetic npz files written here, with
float targets `y` of shape (n,) and (n, 2) on scales far from 0 and 1, so a
forgotten de-standardisation shows as a wrong number, not a small one.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpspec import infer
from mlpspec.cli import app
from mlpspec.data.prepare import load_raw, prepare
from mlpspec.errors import MlpspecError
from mlpspec.spec import load_spec, parse_spec
from mlpspec.train import build_network, fit

from conftest import run_standalone_infer

runner = CliRunner()


def regression_arrays(n: int, seed: int, targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows `(n, 4)` on different scales and targets `(n,)` or `(n, 2)` near 500 and -30."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 50.0, 1.0, -2.0]
    first = 500.0 + 40.0 * x[:, 0] + 2.0 * x[:, 1] + 5.0 * np.tanh(x[:, 3])
    if targets == 1:
        return x, first
    second = -30.0 + 100.0 * x[:, 2] - 3.0 * x[:, 0]
    return x, np.stack([first, second], axis=1)


def regression_spec(name: str = "reg", *, targets: int = 2, extra: str = "",
                    loss: str = 'loss = {type = "mse.v1"}', epochs: int = 40) -> str:
    return textwrap.dedent(f"""\
        spec_version = 1
        name = "{name}"
        task = "regression"
        [data]
        source = "npz"
        train = "train.npz"
        test = "test.npz"
        [data.preprocess]
        scale = "standardize"
        [data.validation]
        take_from = "train"
        size = 0.25
        [network]
        inputs = 4
        [[network.layers]]
        type = "dense.v1"
        units = 16
        [[network.layers]]
        type = "tanh.v1"
        [[network.layers]]
        type = "dense.v1"
        units = {targets}
        [train]
        epochs = {epochs}
        batch_size = 32
        {loss}
        optimizer = {{type = "adam.v1", learning_rate = 0.02}}
        """) + extra


def write_project(folder: Path, *, targets: int = 2, **spec) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 240, 1), ("test", 80, 2)):
        x, y = regression_arrays(n, seed, targets)
        np.savez(folder / f"{split}.npz", x=x, y=y)
    path = folder / "reg.toml"
    path.write_text(regression_spec(targets=targets, **spec))
    return path


def cli(*args: str):
    result = runner.invoke(app, list(args))
    return result


@pytest.fixture(scope="module", params=[1, 2], ids=["y(n,)", "y(n,2)"])
def regression_run(request, tmp_path_factory):
    """A regression spec run through `mlpspec run --json`: (folder, spec path, summary)."""
    folder = tmp_path_factory.mktemp(f"regression{request.param}")
    spec_path = write_project(folder, targets=request.param)
    result = cli("run", str(spec_path), "--json", "--cache-dir", str(folder / "cache"),
                 "--out", str(folder / "run"))
    assert result.exit_code == 0, result.output
    return folder, spec_path, json.loads(result.stdout.splitlines()[-1])


def trainer_values(folder: Path, spec_path: Path) -> tuple[np.ndarray, np.ndarray, object]:
    """(the trainer's test predictions in original units, the raw test targets, prepared data)."""
    spec = load_spec(spec_path)
    data = prepare(load_raw(spec.data, folder, task=spec.task), spec.data, spec.seed,
                   spec.train.precision)
    network = build_network(spec)
    model = infer.load(folder / "run" / "model.mlpm")
    network.load_state_dict({name: np.array(array) for name, array in model.tensors.items()})
    return data.target_scaling.invert(network.predict(data.x_test)), data.y_test, data


# ---------------------------------------------------------------- the CLI


def test_run_reports_regression_metrics_in_original_units(regression_run):
    folder, spec_path, summary = regression_run
    test = summary["test"]
    assert set(test) == {"rmse", "mae", "r2", "loss", "samples"} and test["samples"] == 80
    assert test["r2"] > 0.9  # a smooth function of the inputs, learnt
    predicted, y_test, data = trainer_values(folder, spec_path)
    errors = predicted - y_test
    assert test["rmse"] == pytest.approx(np.mean(np.sqrt(np.mean(errors ** 2, axis=0))), rel=1e-12)
    assert test["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-12)
    # In original units: the targets lie near 500, so RMSE is far beyond the standardised scale.
    assert test["rmse"] > 1.0
    run = folder / "run"
    assert {p.name for p in run.iterdir()} >= {"model.mlpm", "curves.png", "predictions.png",
                                               "residuals.png", "history.csv"}
    assert not (run / "confusion.png").exists()
    header = (run / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,val_loss,val_rmse,val_mae,val_r2,learning_rate,seconds"
    text = cli("run", str(spec_path), "--cache-dir", str(folder / "cache"), "--out", str(run))
    assert text.exit_code == 0
    assert f"test RMSE {test['rmse']:.4g}, MAE {test['mae']:.4g}, R² {test['r2']:.4f}" in text.output


def test_evaluate_on_the_spec_matches_the_run(regression_run):
    folder, spec_path, summary = regression_run
    result = cli("evaluate", str(folder / "run" / "model.mlpm"), "--on", str(spec_path), "--json",
                 "--out", str(folder / "evaluated"))
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    for key in ("rmse", "mae", "r2", "samples"):
        assert evaluated[key] == pytest.approx(summary["test"][key], rel=1e-9)
    names = ["y"] if len(evaluated["per_target"]) == 1 else ["y0", "y1"]
    assert list(evaluated["per_target"]) == names
    assert (folder / "evaluated" / "predictions.png").is_file()


def test_evaluate_refuses_a_regression_model_on_classification_data(regression_run):
    folder, _, _ = regression_run
    result = cli("evaluate", str(folder / "run" / "model.mlpm"), "--on", "mnist")
    assert result.exit_code == 2
    assert "a regression model cannot be scored on mnist, whose task is classification" in result.output


def test_predict_prints_values_in_original_units(regression_run):
    folder, spec_path, _ = regression_run
    predicted, _, data = trainer_values(folder, spec_path)
    rows = load_raw(load_spec(spec_path).data, folder, task="regression").x_test
    np.save(folder / "rows.npy", rows[:3])
    np.save(folder / "row.npy", rows[0])
    model = folder / "run" / "model.mlpm"
    result = cli("predict", str(model), str(folder / "rows.npy"), "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
    # The network's float32 outputs may differ in the last place between batch sizes
    # (BLAS); the de-standardisation is checked bit for bit in test_values_are_the_trainers_inverse.
    np.testing.assert_allclose([list(line["values"].values()) for line in lines], predicted[:3],
                               rtol=1e-6)
    text = cli("predict", str(model), str(folder / "row.npy"))
    assert text.exit_code == 0
    names = data.target_names
    one = infer.load(model).predict(rows[0])
    shown = ", ".join(f"{name} = {value:.6g}" for name, value in zip(names, one))
    assert text.stdout.strip() == f"{folder / 'row.npy'}: {shown}"


def test_inspect_shows_task_and_targets(regression_run):
    folder, _, _ = regression_run
    model_path = folder / "run" / "model.mlpm"
    text = cli("inspect", str(model_path))
    assert text.exit_code == 0, text.output
    model = infer.load(model_path)
    assert f"output       regression, {model.outputs} targets" in text.stdout
    assert "targets      scaling standardize: mean [" in text.stdout
    described = json.loads(cli("inspect", str(model_path), "--json").stdout)
    assert described["task"] == "regression" and described["classes"] == []
    assert described["targets"]["names"] == list(model.target_names)
    assert described["format_version"] == [1, 2]


# ---------------------------------------------------------------- infer.py alone

# Run by conftest.run_standalone_infer: a copy of infer.py, mlpspec unimportable.
STANDALONE = """

    model = infer.load(sys.argv[2])
    rows = np.load(sys.argv[3])
    values = model.predict(rows)
    one = model.predict(rows[0])
    try:
        model.predict_proba(rows)
    except TypeError as error:
        refused = str(error)
    else:
        refused = None
    print(json.dumps({"values": values.tolist(), "shape": list(values.shape),
                      "one": one.tolist(), "task": model.task, "names": list(model.target_names),
                      "refused": refused}))
"""


def test_standalone_infer_returns_the_trainers_values(regression_run, tmp_path):
    folder, spec_path, _ = regression_run
    predicted, _, data = trainer_values(folder, spec_path)
    rows = load_raw(load_spec(spec_path).data, folder, task="regression").x_test
    np.save(tmp_path / "rows.npy", rows)
    report = run_standalone_infer(tmp_path, STANDALONE, folder / "run" / "model.mlpm",
                                  tmp_path / "rows.npy")
    assert report["task"] == "regression" and report["names"] == list(data.target_names)
    assert report["shape"] == list(predicted.shape)
    assert report["values"] == predicted.tolist()  # the whole batch: bit for bit the trainer's
    assert "regression model" in report["refused"] and "predict() returns its values" in report["refused"]
    np.testing.assert_allclose(report["one"], predicted[0], rtol=1e-6)


def test_values_are_the_trainers_inverse(regression_run):
    """infer.py's de-standardisation is `Scaling.invert`, bit for bit, on the same outputs."""
    folder, spec_path, _ = regression_run
    _, _, data = trainer_values(folder, spec_path)
    model = infer.load(folder / "run" / "model.mlpm")
    rows = load_raw(load_spec(spec_path).data, folder, task="regression").x_test
    for batch in (rows, rows[:2]):
        np.testing.assert_array_equal(model.predict(batch), data.target_scaling.invert(model.logits(batch)))
    np.testing.assert_array_equal(model.predict_prepared(model.preprocess(rows)), model.predict(rows))
    assert model.predict(rows[0]).shape == (model.outputs,)


def test_onnx_values_agree_with_infer(regression_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    folder, spec_path, _ = regression_run
    model_path = folder / "run" / "model.mlpm"
    result = cli("export", str(model_path), "-o", str(tmp_path / "m.onnx"))
    assert result.exit_code == 0, result.output
    rows = load_raw(load_spec(spec_path).data, folder, task="regression").x_test
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert [o.name for o in session.get_outputs()] == ["logits", "values"]
    logits, values = session.run(None, {"input": rows.astype(np.float32)})
    model = infer.load(model_path)
    assert values.dtype == np.float64
    np.testing.assert_allclose(values, model.predict(rows.astype(np.float32)), rtol=1e-6)
    np.testing.assert_allclose(logits, model.logits(rows.astype(np.float32)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- fit


def prepared(tmp_path: Path, spec_text: str, targets: int = 2):
    path = write_project(tmp_path, targets=targets)
    path.write_text(spec_text)
    spec = parse_spec(spec_text, str(path))
    data = prepare(load_raw(spec.data, tmp_path, task=spec.task), spec.data, spec.seed,
                   spec.train.precision)
    return spec, data


def test_fit_trains_on_standardised_float_targets(tmp_path):
    spec, data = prepared(tmp_path, regression_spec(epochs=30))
    assert data.t_train.dtype == np.float32 and data.t_train.shape == (180, 2)
    np.testing.assert_allclose(data.t_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.t_train.std(axis=0), 1.0, rtol=1e-5)
    assert data.y_train.dtype == np.float64 and data.target_names == ("y0", "y1")
    result = fit(spec, data)
    first, last = result.history[0], result.history[-1]
    assert math.isnan(last.train_accuracy) and math.isnan(last.val_accuracy)
    assert last.val_rmse < first.val_rmse and last.val_r2 > 0.9
    # The recorded validation figures are in original units.
    values = data.target_scaling.invert(result.network.predict(data.x_val))
    assert last.val_rmse == pytest.approx(
        np.mean(np.sqrt(np.mean((values - data.y_val) ** 2, axis=0))), rel=1e-9)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2", "loss"])
def test_early_stopping_watches_the_regression_metric(tmp_path, metric):
    extra = (f'[train.early_stopping]\npatience = 2\nmetric = "{metric}"\n')
    spec, data = prepared(tmp_path, regression_spec(epochs=60, extra=extra)
                          .replace("learning_rate = 0.02", "learning_rate = 0.2"))
    result = fit(spec, data)
    history = result.history
    score = {"rmse": lambda r: -r.val_rmse, "mae": lambda r: -r.val_mae,
             "r2": lambda r: r.val_r2, "loss": lambda r: -r.val_loss}[metric]
    best = max(range(len(history)), key=lambda i: score(history[i]))
    assert result.best_epoch == history[best].epoch
    if result.stopped_early:
        assert len(history) - result.best_epoch == 2


# ---------------------------------------------------------------- checks


def problems(text: str) -> list[str]:
    with pytest.raises(MlpspecError) as caught:
        parse_spec(text, "reg.toml")
    return str(caught.value).splitlines()


def test_classification_losses_and_settings_are_refused_for_regression():
    text = regression_spec(loss='loss = {type = "softmax_cross_entropy.v1", label_smoothing = 0.1}')
    assert any("train.loss.type: expected a regression loss ('mse.v1', 'mae.v1', 'huber.v1') for "
               "task = 'regression', found 'softmax_cross_entropy.v1'" in p for p in problems(text))
    extra = '[train.early_stopping]\npatience = 3\n'
    assert any("train.early_stopping.metric: expected one of 'loss', 'rmse', 'mae', 'r2' for task = "
               "'regression'" in p for p in problems(regression_spec(extra=extra)))
    # stratify (the default) applies to class labels; regression targets are split at random
    stratified = regression_spec().replace("size = 0.25", "size = 0.25\nstratify = true")
    parse_spec(stratified, "reg.toml")  # valid
    with_classes = regression_spec().replace('test = "test.npz"', 'test = "test.npz"\nclasses = 3')
    assert any("data.classes: expected no classes for task = 'regression'" in p
               for p in problems(with_classes))
    builtin = regression_spec().replace('source = "npz"\ntrain = "train.npz"\ntest = "test.npz"',
                                        'source = "mnist"')
    assert any("task: expected 'classification': mnist is a classification dataset" in p
               for p in problems(builtin))


def test_regression_losses_and_metrics_are_refused_for_classification():
    text = regression_spec(loss='loss = {type = "mae.v1"}').replace('task = "regression"\n', "")
    text = text.replace('test = "test.npz"', 'test = "test.npz"\nclasses = 3')
    found = problems(text + '[train.early_stopping]\npatience = 3\nmetric = "r2"\n')
    assert any("train.loss.type: expected a classification loss" in p and "found 'mae.v1'" in p
               for p in found)
    assert any("train.early_stopping.metric: expected 'accuracy' or 'loss' for classification" in p
               for p in found)
    no_classes = regression_spec().replace('task = "regression"\n', "")
    assert any("data.classes: expected the number of classes (at least 2)" in p
               for p in problems(no_classes))


def test_output_units_must_match_the_number_of_targets(tmp_path):
    spec_path = write_project(tmp_path, targets=2)
    spec_path.write_text(regression_spec(targets=3))
    result = cli("run", str(spec_path), "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert ("network.layers[2].units: expected 2 (the number of targets in the data; the last dense "
            "layer is the output), found 3") in result.output


def test_validate_reads_the_data_to_count_the_targets(tmp_path):
    spec_path = write_project(tmp_path, targets=2)
    assert cli("validate", str(spec_path)).exit_code == 0
    spec_path.write_text(regression_spec(targets=1))
    result = cli("validate", str(spec_path))
    assert result.exit_code == 2
    assert "network.layers[2].units: expected 2 (the number of targets in the data" in result.output


def test_data_info_reads_regression_data_without_a_traceback(tmp_path):
    result = cli("data", "info", str(write_project(tmp_path, targets=2)), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["train"]["samples"] == 240


def test_float_targets_with_nan_are_refused_naming_the_file(tmp_path):
    spec_path = write_project(tmp_path, targets=1)
    x, y = regression_arrays(10, 0, 1)
    y[4] = np.nan
    np.savez(tmp_path / "test.npz", x=x, y=y)
    result = cli("run", str(spec_path), "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "test.npz: y: expected finite targets, found [nan] at sample 4" in result.output


# ---------------------------------------------------------------- the example spec

REPO = Path(__file__).resolve().parent.parent


def test_diabetes_spec_is_valid():
    result = cli("validate", str(REPO / "specs" / "diabetes.toml"))
    assert result.exit_code == 0, result.output


def test_diabetes_spec_runs_on_the_tools_data(tmp_path):
    """The README's two commands: the tool writes the npz files, the spec trains on them."""
    pytest.importorskip("sklearn")
    done = subprocess.run([sys.executable, str(REPO / "tools" / "make_regression_data.py"),
                           "--out", str(tmp_path / "data" / "diabetes")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shutil.copy(REPO / "specs" / "diabetes.toml", tmp_path / "diabetes.toml")
    result = cli("run", str(tmp_path / "diabetes.toml"), "--json", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    test = json.loads(result.stdout)["test"]
    assert test["samples"] == 88 and test["r2"] > 0.3


def test_csv_regression_with_named_target_columns_end_to_end(tmp_path):
    """task = "regression" on a CSV with a header: `data.targets` names two target columns,
    the run scores them in their units, and the model file predicts them from raw rows."""
    header = "a,b,c,d,t1,t2"
    for name, n, seed in (("train", 200, 0), ("test", 50, 1)):
        x, y = regression_arrays(n, seed, 2)
        rows = [",".join(f"{v:.6f}" for v in (*xr, *yr)) for xr, yr in zip(x, y)]
        (tmp_path / f"{name}.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    (tmp_path / "r.toml").write_text(textwrap.dedent("""\
        spec_version = 1
        name = "csvreg"
        task = "regression"
        [data]
        source = "csv"
        train = "train.csv"
        test = "test.csv"
        header = true
        targets = ["t1", "t2"]
        [data.preprocess]
        scale = "standardize"
        [network]
        inputs = 4
        [[network.layers]]
        type = "dense.v1"
        units = 16
        [[network.layers]]
        type = "relu.v1"
        [[network.layers]]
        type = "dense.v1"
        units = 2
        [train]
        epochs = 30
        batch_size = 32
        loss = {type = "mse.v1"}
        optimizer = {type = "adam.v1", learning_rate = 0.01}
        """))
    assert cli("validate", str(tmp_path / "r.toml")).exit_code == 0
    result = cli("run", str(tmp_path / "r.toml"), "--json", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    test = json.loads(result.stdout)["test"]
    assert test["r2"] > 0.5, test
    model = infer.load(tmp_path / "run" / "model.mlpm")
    assert model.task == "regression" and tuple(model.target_names) == ("t1", "t2")
    x, y = regression_arrays(50, 1, 2)
    values = model.predict(x.round(6))  # the feature columns as the file holds them
    assert values.shape == (50, 2)
    rmse = np.sqrt(np.mean((values - y.round(6)) ** 2, axis=0))  # per target, then their mean
    assert float(rmse.mean()) == pytest.approx(test["rmse"], rel=1e-6)


def test_runs_ls_and_compare_show_the_regression_figures(regression_run):
    """A regression run has no accuracy: `runs ls` shows its RMSE, `runs compare` RMSE, MAE, R²."""
    folder, _, summary = regression_run
    listing = cli("runs", "ls", str(folder), "--json")
    assert listing.exit_code == 0, listing.output
    [info] = json.loads(listing.output)
    assert info["task"] == "regression" and info["test_accuracy"] is None
    assert info["test_rmse"] == pytest.approx(summary["test"]["rmse"], rel=1e-12)
    assert info["test_r2"] == pytest.approx(summary["test"]["r2"], rel=1e-12)
    table = cli("runs", "ls", str(folder))
    assert f"RMSE {summary['test']['rmse']:.4g}" in table.output, table.output
    compare = cli("runs", "compare", str(folder / "run"), str(folder / "run"))
    assert compare.exit_code == 0, compare.output
    shown = {line.split()[0]: line.split()[1:] for line in compare.output.splitlines() if line.strip()}
    assert shown["test_rmse"] == [f"{summary['test']['rmse']:.4g}"] * 2
    assert {"test_mae", "test_r2", "validation_rmse"} <= set(shown)
