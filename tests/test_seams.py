"""Seams between features merged from parallel branches: tabular CSV x regression,
CSV string labels x predict, tabular specs x sweeps, models x `evaluate --on`.

Each test goes through the path a user takes (the CLI via CliRunner, or a copy
of infer.py in a process where mlpspec cannot be imported) and checks the
answer against the trainer's, so a silent wrong answer fails.
"""

from __future__ import annotations

import csv
import re
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mlpspec import infer
from mlpspec.data.prepare import load_raw, prepare
from mlpspec.spec import load_spec
from mlpspec.train import build_network

from conftest import invoke, run_standalone_infer

COLORS = ["red", "green", "blue"]
REG_HEADER = ["a", "color", "b", "ya", "yb"]




def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def regression_rows(seed: int, n: int) -> list[list[str]]:
    """Rows a, color, b, ya, yb as text: targets near 600 and -30, `a` sometimes missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        k = int(rng.integers(0, 3))
        a, b = rng.normal(50, 10), rng.normal(0, 1)
        ya, yb = 300 + 5 * a + 40 * k + rng.normal(0, 2), -20 + 3 * b - 10 * k
        rows.append(["" if rng.random() < 0.1 else f"{a:.3f}", COLORS[k], f"{b:.3f}",
                     f"{ya:.3f}", f"{yb:.3f}"])
    return rows


REGRESSION = """\
spec_version = 1
name = "reg"
task = "regression"
seed = 1
[data]
source = "csv"
train = "train.csv"
test = "test.csv"
header = true
targets = ["ya", "yb"]
categorical = ["color"]
missing = "mean"
[data.preprocess]
scale = "standardize"
[data.validation]
take_from = "train"
size = 0.2
[network]
inputs = 5
[[network.layers]]
type = "dense.v1"
units = 16
[[network.layers]]
type = "tanh.v1"
[[network.layers]]
type = "dense.v1"
units = 2
[train]
epochs = 30
batch_size = 16
loss = {type = "mse.v1"}
optimizer = {type = "adam.v1", learning_rate = 0.01}
"""


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """(folder, spec path, model path, run summary) of a CSV regression spec run by the CLI."""
    folder = tmp_path_factory.mktemp("csvreg")
    write_csv(folder / "train.csv", REG_HEADER, regression_rows(0, 200))
    write_csv(folder / "test.csv", REG_HEADER, regression_rows(1, 60))
    (folder / "reg.toml").write_text(REGRESSION)
    result = invoke("run", folder / "reg.toml", "--json", "--out", folder / "run",
                    "--cache-dir", folder / "cache")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    return folder, folder / "reg.toml", folder / "run" / "model.mlpm", summary


def regression_trainer(folder: Path, spec_path: Path, model_path: Path) -> np.ndarray:
    """The trained network's test predictions `(n, 2)` in the targets' units."""
    spec = load_spec(spec_path)
    data = prepare(load_raw(spec.data, folder, task=spec.task), spec.data, spec.seed,
                   spec.train.precision)
    network = build_network(spec)
    model = infer.load(model_path)
    network.load_state_dict({name: np.array(array) for name, array in model.tensors.items()})
    return data.target_scaling.invert(network.predict(data.x_test))


def test_csv_regression_infer_and_evaluate_match_the_trainer(regression):
    folder, spec_path, model_path, summary = regression
    assert summary["test"]["r2"] > 0.9
    trained = regression_trainer(folder, spec_path, model_path)
    rows = list(csv.reader((folder / "test.csv").open()))[1:]
    model = infer.load(model_path)
    np.testing.assert_array_equal(model.predict(np.array(rows, dtype=object)), trained)
    np.testing.assert_array_equal(model.predict([dict(zip(REG_HEADER, r)) for r in rows]), trained)
    result = invoke("evaluate", model_path, "--on", spec_path, "--json", "--out", folder / "ev")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output.strip().splitlines()[-1])
    for key in ("rmse", "mae", "r2", "samples"):
        assert evaluated[key] == pytest.approx(summary["test"][key], rel=1e-9)


def test_sweep_over_a_regression_spec_ranks_by_loss(regression, tmp_path):
    """Was a traceback: the default --rank-by accuracy met a regression trial's None accuracy."""
    folder, spec_path, _, _ = regression
    result = invoke("sweep", spec_path, "--grid", "train.optimizer.learning_rate=[0.01,0.003]",
                    "--seeds", "1,2", "--jobs", "2", "--cache-dir", folder / "cache",
                    "--out", tmp_path / "sweep")
    assert result.exit_code == 0, result.output
    assert "ranked by validation loss" in result.output
    assert json.loads((tmp_path / "sweep" / "results.json").read_text())["sweep"]["rank_by"] \
        == "validation loss"
    best = invoke("run", tmp_path / "sweep" / "best.toml", "--json", "--out", tmp_path / "best",
                  "--cache-dir", folder / "cache")
    assert best.exit_code == 0, best.output
    assert "rmse" in json.loads(best.output.strip().splitlines()[-1])["test"]


def test_evaluate_matches_regression_targets_by_name(regression, tmp_path):
    """Was a silent wrong answer: a spec listing the model's targets in another order
    was scored column against column (R² -2820, reported under the model's names)."""
    folder, spec_path, model_path, summary = regression
    swapped = folder / "swapped.toml"
    swapped.write_text(REGRESSION.replace('targets = ["ya", "yb"]', 'targets = ["yb", "ya"]'))
    result = invoke("evaluate", model_path, "--on", swapped, "--json", "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output.strip().splitlines()[-1])
    assert evaluated["r2"] == pytest.approx(summary["test"]["r2"], rel=1e-9)
    assert evaluated["per_target"]["ya"]["rmse"] > evaluated["per_target"]["yb"]["rmse"]


def test_predict_cli_takes_csv_rows_of_a_tabular_regression_model(regression, tmp_path):
    """Was refused: `predict` read every CSV cell as a number in file order, so a
    categorical column ('green') or the training file's own rows could not be given,
    and a header naming the columns in another order would have been ignored."""
    folder, spec_path, model_path, _ = regression
    trained = regression_trainer(folder, spec_path, model_path)[:5]
    rows = list(csv.reader((folder / "test.csv").open()))[1:6]
    write_csv(tmp_path / "whole.csv", REG_HEADER, rows)                       # the training file's form
    write_csv(tmp_path / "reordered.csv", ["b", "yb", "color", "a"],         # by name, any order
              [[r[2], "", r[1], r[0]] for r in rows])
    (tmp_path / "bare.csv").write_text("".join(f"{r[0]},{r[1]},{r[2]}\n" for r in rows))  # features only
    for name in ("whole.csv", "reordered.csv", "bare.csv"):
        result = invoke("predict", model_path, tmp_path / name, "--json")
        assert result.exit_code == 0, result.output
        values = [json.loads(line)["values"] for line in result.output.splitlines()]
        np.testing.assert_allclose([[v["ya"], v["yb"]] for v in values], trained, rtol=1e-12)
    write_csv(tmp_path / "short.csv", ["a", "b"], [["1", "2"]])
    result = invoke("predict", model_path, tmp_path / "short.csv")
    assert result.exit_code == 2
    assert "no column 'color'" in result.output


# Run by conftest.run_standalone_infer: a copy of infer.py, mlpspec unimportable.
STANDALONE = """
    import csv

    model = infer.load(sys.argv[2])
    with open(sys.argv[3], newline="") as stream:
        table = list(csv.reader(stream))
    header, rows = table[0], table[1:]
    records = [dict(zip(header, row)) for row in rows]
    print(json.dumps({"rows": model.predict(rows).tolist(),
                      "records": model.predict(records).tolist(),
                      "one": model.predict(records[0]).tolist()}))
"""


def test_standalone_infer_on_csv_regression_rows_matches_the_trainer(regression, tmp_path):
    folder, spec_path, model_path, _ = regression
    trained = regression_trainer(folder, spec_path, model_path)
    report = run_standalone_infer(tmp_path, STANDALONE, model_path, folder / "test.csv")
    np.testing.assert_array_equal(report["rows"], trained)
    np.testing.assert_array_equal(report["records"], trained)
    np.testing.assert_array_equal(report["one"], trained[0])


def test_onnx_of_a_csv_regression_model_gives_the_trainers_values(regression):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from mlpspec.onnx_export import to_onnx

    folder, spec_path, model_path, _ = regression
    trained = regression_trainer(folder, spec_path, model_path)
    model = infer.load(model_path)
    rows = list(csv.reader((folder / "test.csv").open()))[1:]
    session = ort.InferenceSession(to_onnx(model))
    outputs = session.run(None, {"input": model.encode(np.array(rows, dtype=object)).astype(np.float32)})
    values = [o for o in outputs if o.shape == trained.shape]
    assert values, [o.shape for o in outputs]
    np.testing.assert_allclose(values[-1], trained, rtol=1e-5, atol=1e-4)


ODD_LABELS = ['big, "cat"', "dog\nx", "10", "9"]

CLASSIFICATION = """\
spec_version = 1
name = "odd"
seed = 2
[data]
source = "csv"
train = "train.csv"
test = "test.csv"
header = true
label_column = "animal"
categorical = ["color"]
missing = "median"
[data.preprocess]
scale = "minmax"
[data.validation]
take_from = "train"
size = 0.2
[network]
inputs = 5
[[network.layers]]
type = "dense.v1"
units = 16
[[network.layers]]
type = "relu.v1"
[[network.layers]]
type = "dense.v1"
units = 4
[train]
epochs = 40
batch_size = 16
[train.optimizer]
type = "adam.v1"
learning_rate = 0.02
"""


def odd_rows(seed: int, n: int) -> list[list[str]]:
    """Rows size, color, animal, weight: the label (one of ODD_LABELS) follows size and colour."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        k = int(rng.integers(0, 4))
        color = COLORS[k % 2] if rng.random() < 0.95 else COLORS[2]
        weight = "" if rng.random() < 0.1 else f"{rng.normal(100, 10):.2f}"
        rows.append([f"{10.0 * (k // 2 + 1) + rng.normal(0, 1):.3f}", color, ODD_LABELS[k], weight])
    return rows


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd")
    header = ["size", "color", "animal", "weight"]
    write_csv(folder / "train.csv", header, odd_rows(0, 200))
    write_csv(folder / "test.csv", header, odd_rows(1, 60))
    (folder / "odd.toml").write_text(CLASSIFICATION)
    result = invoke("run", folder / "odd.toml", "--json", "--out", folder / "run", "--cache-dir", folder / "cache")
    assert result.exit_code == 0, result.output
    return folder, folder / "odd.toml", folder / "run" / "model.mlpm", json.loads(result.output.splitlines()[-1])


def test_csv_string_labels_through_predict_and_evaluate(odd):
    folder, spec_path, model_path, summary = odd
    model = infer.load(model_path)
    assert sorted(model.classes) == sorted(ODD_LABELS)
    result = invoke("evaluate", model_path, "--on", spec_path, "--json", "--out", folder / "ev")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output.splitlines()[-1])
    assert evaluated["accuracy"] == summary["test"]["accuracy"] > 0.8
    assert evaluated["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)
    result = invoke("predict", model_path, folder / "test.csv", "--json")
    assert result.exit_code == 0, result.output
    labels = [json.loads(line)["top"][0]["label"] for line in result.output.splitlines()]
    truth = [row[2] for row in list(csv.reader((folder / "test.csv").open()))[1:]]
    assert np.mean([a == b for a, b in zip(labels, truth)]) == summary["test"]["accuracy"]
    text = invoke("predict", model_path, folder / "test.csv").output.splitlines()
    assert len(text) == len(truth)  # a newline in a class name is escaped, never a line break


def test_inspect_of_both_kinds_of_tabular_model(odd, regression):
    for model_path in (odd[2], regression[2]):
        for extra in ((), ("--json",), ("--spec",)):
            result = invoke("inspect", model_path, *extra)
            assert result.exit_code == 0, result.output
        described = json.loads(invoke("inspect", model_path, "--json").output)
        assert described["format_version"] == [1, 2]


@pytest.mark.parametrize("change, expected", [
    # Was "data.exclude: no column 'yc'": the second target was checked as an excluded column.
    (('targets = ["ya", "yb"]', 'targets = ["ya", "yc"]'), "data.targets: no column 'yc' in the header"),
    (('targets = ["ya", "yb"]', 'targets = ["yq", "yb"]'), "data.targets: no column 'yq' in the header"),
    # Was "missing label ''; ... (is data.label_column the label column?)" for a regression target.
    (('train = "train.csv"', 'train = "holes.csv"'), "line 4, column 4 ('ya'): missing target ''"),
])
def test_regression_csv_errors_name_the_targets(regression, tmp_path, change, expected):
    folder = regression[0]
    lines = (folder / "train.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[3] = ""
    lines[3] = ",".join(cells)
    (tmp_path / "holes.csv").write_text("\n".join(lines) + "\n")
    for name in ("train.csv", "test.csv"):
        shutil.copy(folder / name, tmp_path / name)
    (tmp_path / "s.toml").write_text(REGRESSION.replace(*change))
    for command in ("validate", "run"):
        extra = ("--out", tmp_path / "run", "--cache-dir", tmp_path / "cache") if command == "run" else ()
        result = invoke(command, tmp_path / "s.toml", *extra)
        assert result.exit_code == 2, result.output
        assert expected in result.output


def test_predict_csv_of_a_model_trained_without_a_header(tmp_path):
    """A model of a headerless CSV (columns named 'column k') takes the file's rows, its
    feature columns, or rows under a header of other names (skipped, as for plain models)."""
    rng = np.random.default_rng(4)
    for name, n in (("train", 90), ("test", 30)):
        k = rng.integers(0, 2, n)
        rows = [[f"{10 + 10 * c + rng.normal():.3f}", "ab"[c], f"{rng.normal():.3f}"] for c in k]
        write_csv(tmp_path / f"{name}.csv", rows[0], rows[1:])  # no header: the first row is data
    (tmp_path / "s.toml").write_text(textwrap.dedent("""\
        spec_version = 1
        name = "nh"
        [data]
        source = "csv"
        train = "train.csv"
        test = "test.csv"
        label_column = 1
        [data.validation]
        take_from = "train"
        size = 10
        [network]
        inputs = 2
        [[network.layers]]
        type = "dense.v1"
        units = 2
        [train]
        epochs = 30
        """))
    result = invoke("run", tmp_path / "s.toml", "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    model = infer.load(tmp_path / "run" / "model.mlpm")
    rows = list(csv.reader((tmp_path / "test.csv").open()))
    expected = [model.classes[c] for c in model.predict(np.array(rows, dtype=object))]
    write_csv(tmp_path / "named.csv", ["x", "y"], [[r[0], r[2]] for r in rows])
    for name in ("test.csv", "named.csv"):
        result = invoke("predict", tmp_path / "run" / "model.mlpm", tmp_path / name, "--json")
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["top"][0]["label"] for line in result.output.splitlines()] == expected


def test_encoded_rows_given_as_raw_rows_are_refused(regression, tmp_path):
    """Was a silent wrong answer: the regression model encodes 5 source columns to 5 inputs,
    so its encoded rows (encode(), what ONNX takes) also fit as the training file's rows;
    with unseen = "ignore" the one-hot 0/1 in the 'color' column became an unseen category
    (all zeros) and 'b' was read from another one-hot column, and predict answered."""
    folder = regression[0]
    for name in ("train.csv", "test.csv"):
        shutil.copy(folder / name, tmp_path / name)
    (tmp_path / "s.toml").write_text(REGRESSION.replace('missing = "mean"', 'missing = "mean"\nunseen = "ignore"'))
    result = invoke("run", tmp_path / "s.toml", "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    model = infer.load(tmp_path / "run" / "model.mlpm")
    rows = np.array(list(csv.reader((tmp_path / "test.csv").open()))[1:6], dtype=object)
    encoded = model.encode(rows)
    assert encoded.shape == rows.shape  # the coincidence that makes it ambiguous
    with pytest.raises(infer.InputError, match=r"column 'color': expected its categories as text"):
        model.predict(encoded)
    np.save(tmp_path / "encoded.npy", encoded)
    result = invoke("predict", tmp_path / "run" / "model.mlpm", tmp_path / "encoded.npy")
    assert result.exit_code == 2 and "expected its categories as text" in result.output
    # A missing category (NaN) in an otherwise numeric row is still a raw row.
    np.testing.assert_array_equal(model.predict(np.array([[50.0, np.nan, 0.1]])),
                                  model.predict([{"a": 50.0, "color": None, "b": 0.1}]))


def test_a_wrong_input_count_is_named_by_validate_and_by_a_cached_run(regression, tmp_path):
    """Were: `validate` said valid (it cannot count a CSV file's encoded inputs from its
    shape), and `run` with the preprocess stage cached (its key does not cover
    network.inputs) skipped the check and ended in a ValueError traceback in Dense."""
    folder = regression[0]
    wrong = folder / "wrong_inputs.toml"
    wrong.write_text(REGRESSION.replace("inputs = 5", "inputs = 4"))
    expected = "network.inputs: expected 5 (the columns encode to 5 inputs: a, color=blue"
    result = invoke("validate", wrong)
    assert result.exit_code == 2 and expected in result.output, result.output
    result = invoke("run", wrong, "--out", tmp_path / "run", "--cache-dir", folder / "cache")
    assert result.exit_code == 2 and expected in result.output, result.output


def test_evaluate_refuses_a_dataset_whose_classes_are_other_names(odd, tmp_path):
    """Same number of classes, one of them another animal: scoring by position would count
    'wolf' rows right when the model says 'fox'. Refused, naming both lists."""
    folder, spec_path, model_path, _ = odd
    header = ["size", "color", "animal", "weight"]
    renamed = [[*row[:2], "wolf" if row[2] == ODD_LABELS[3] else row[2], row[3]]
               for row in odd_rows(0, 200)]
    write_csv(tmp_path / "train.csv", header, renamed)
    write_csv(tmp_path / "test.csv", header, renamed[:60])
    (tmp_path / "odd.toml").write_text(spec_path.read_text())
    result = invoke("evaluate", model_path, "--on", tmp_path / "odd.toml", "--out", tmp_path / "ev")
    assert result.exit_code == 2, result.output
    assert "are not the classes of" in result.output and "wolf" in result.output


@pytest.mark.parametrize("damage, field", [
    (lambda d: d["preprocessing"]["columns"]["source"].__setitem__(1, d["preprocessing"]["columns"]["source"][0]),
     "preprocessing.columns.source[1]: expected each name once"),
    (lambda d: d["preprocessing"]["columns"]["features"][0].__setitem__("fill", float("nan")),
     "preprocessing.columns.features[0].fill: expected a finite number"),
    (lambda d: d["classes"].__setitem__(1, d["classes"][0]), "classes[1]: expected each name once"),
])
def test_model_files_with_repeated_names_or_a_nan_fill_are_refused_at_load(odd, damage, field):
    """A repeated column name would read one column twice; a NaN fill would blame the input
    at predict time (and pass through ONNX): both are refused when the file is read."""
    import msgpack

    _, _, model_path, _ = odd
    document = msgpack.unpackb(model_path.read_bytes(), raw=False)
    del document["checksum"]
    assert document["preprocessing"]["columns"]["features"][0]["kind"] == "numeric"
    damage(document)
    with pytest.raises(infer.ModelFormatError, match=re.escape(field)):
        infer.load(infer.encode(document))


def test_class_weights_on_a_csv_whose_classes_come_from_its_labels(odd, tmp_path):
    """A CSV source's classes are counted from its labels (classes = 0 in the spec): explicit
    class weights were refused as "expected 0 weights"; now they are checked against the
    classes found, by validate and by run."""
    folder, spec_path, _, _ = odd
    for name in ("train.csv", "test.csv"):
        shutil.copy(folder / name, tmp_path / name)
    text = spec_path.read_text()
    four = tmp_path / "four.toml"
    four.write_text(text + '[train.loss]\ntype = "softmax_cross_entropy.v1"\nclass_weights = [1.0, 2.0, 1.0, 1.0]\n')
    assert invoke("validate", four).exit_code == 0
    ran = invoke("run", four, "--cache-dir", tmp_path / "cache", "--out", tmp_path / "run")
    assert ran.exit_code == 0, ran.output
    three = tmp_path / "three.toml"
    three.write_text(text + '[train.loss]\ntype = "softmax_cross_entropy.v1"\nclass_weights = [1.0, 2.0, 1.0]\n')
    for command in (("validate", three), ("run", three, "--cache-dir", tmp_path / "cache")):
        result = invoke(*command)
        assert result.exit_code == 2 and "train.loss.class_weights: expected 4 weights" in result.output, \
            result.output
