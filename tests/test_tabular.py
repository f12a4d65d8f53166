"""Tabular CSV end to end (issue 10): named columns, string labels, categories,
missing values, and the whole preprocessing travelling with the model.

A mixed table (an id column, numbers with empty cells, a categorical column,
the string label in the middle, a free-text column left out) is run through
the CLI; `evaluate --on SPEC`, a standalone copy of `infer.py` (mlpspec
blocked) given the file's raw rows or records, and the trainer must agree.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mlpspec import infer
from mlpspec.data.prepare import load_raw, prepare
from mlpspec.spec import load_spec
from mlpspec.train import build_network

from conftest import invoke, run_standalone_infer

INFER_SOURCE = Path(infer.__file__)
HEADER = ["id", "size", "color", "animal", "weight", "note"]
COLORS = ["red", "green", "blue"]
ANIMALS = ["cat", "dog", "fox"]


def table_rows(seed: int, n: int) -> list[list[str]]:
    """Rows as text: the animal follows the colour, with size and weight as noisy hints."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = int(rng.integers(0, 3))
        color = COLORS[k] if rng.random() < 0.9 else COLORS[int(rng.integers(0, 3))]
        size = 10.0 * (k + 1) + rng.normal(0, 2)
        weight = "" if rng.random() < 0.1 else f"{100 * (3 - k) + rng.normal(0, 10):.2f}"
        rows.append([str(1000 + i), f"{size:.3f}", color, ANIMALS[k], weight, f"note {i}"])
    return rows


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


SPEC = """\
spec_version = 1
name = "animals"
seed = 1
[data]
source = "csv"
train = "train.csv"
test = "test.csv"
header = true
label_column = "animal"
exclude = ["id", "note"]
categorical = ["color"]
missing = "median"
[data.preprocess]
scale = "standardize"
[data.validation]
take_from = "train"
size = 0.2
stratify = true
[network]
inputs = 5
[[network.layers]]
type = "dense.v1"
units = 16
[[network.layers]]
type = "relu.v1"
[[network.layers]]
type = "dense.v1"
units = 3
[train]
epochs = 40
batch_size = 16
[train.optimizer]
type = "adam.v1"
learning_rate = 0.01
"""




@pytest.fixture(scope="module")
def animals(tmp_path_factory):
    """(folder, spec path, model path, run summary) of the mixed table run through the CLI."""
    folder = tmp_path_factory.mktemp("animals")
    write_csv(folder / "train.csv", table_rows(0, 150))
    write_csv(folder / "test.csv", table_rows(1, 45))
    (folder / "animals.toml").write_text(SPEC)
    result = invoke("run", folder / "animals.toml", "--json", "--out", folder / "run",
                    "--cache-dir", folder / "cache")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    return folder, folder / "animals.toml", folder / "run" / "model.mlpm", summary


def trainer_predictions(folder: Path, spec_path: Path, model_path: Path) -> tuple[np.ndarray, object]:
    """The trained network's probabilities on the prepared test split, and the prepared data."""
    spec = load_spec(spec_path)
    data = prepare(load_raw(spec.data, folder), spec.data, spec.seed, spec.train.precision)
    network = build_network(spec)
    model = infer.load(model_path)
    network.load_state_dict({name: np.array(array) for name, array in model.tensors.items()})
    Z = network.predict(data.x_test)
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    return P / P.sum(axis=1, keepdims=True), data


def test_the_model_keeps_class_names_and_columns(animals):
    _, _, model_path, summary = animals
    assert summary["test"]["accuracy"] > 0.8
    model = infer.load(model_path)
    assert model.format_version == (1, 2)
    assert model.classes == ("cat", "dog", "fox")  # string labels, sorted, names kept
    columns = model.columns
    assert columns["source"] == HEADER and columns["label"] == ["animal"]
    assert [(f["name"], f["kind"]) for f in columns["features"]] == [
        ("size", "numeric"), ("color", "categorical"), ("weight", "numeric")]
    assert columns["features"][1]["categories"] == ["blue", "green", "red"]
    assert columns["missing"] == "median" and columns["unseen"] == "error"
    weights = [float(r[4]) for r in csv.reader(open(animals[0] / "train.csv")) if r[4] and r[0] != "id"]
    # The fill is the median of the training split (validation rows left out), near the file's.
    assert abs(columns["features"][2]["fill"] - np.median(weights)) < 40
    shown = invoke("inspect", model_path).output
    assert "columns      3 of 6 (label animal; missing median, unseen error)" in shown
    assert "color (3 categories, fill " in shown and "size (numeric, fill " in shown


def test_evaluate_on_the_spec_matches_the_run(animals):
    folder, spec_path, model_path, summary = animals
    result = invoke("evaluate", model_path, "--on", spec_path, "--json", "--out", folder / "ev")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output.strip().splitlines()[-1])
    assert evaluated["samples"] == summary["test"]["samples"] == 45
    assert evaluated["accuracy"] == summary["test"]["accuracy"]


# Run by conftest.run_standalone_infer: a copy of infer.py, mlpspec unimportable.
STANDALONE = """

    model = infer.load(sys.argv[2])
    given = json.loads(open(sys.argv[3]).read())
    rows = np.array(given["rows"], dtype=object)         # every column of the file, as text
    features = np.array(given["features"], dtype=object)  # feature columns, numbers and text
    out = {"rows": model.predict_proba(rows).tolist(),
           "features": model.predict_proba(features).tolist(),
           "records": model.predict_proba(given["records"]).tolist(),
           "one": model.predict(given["records"][0])}
    try:
        model.predict({**given["records"][0], "color": "purple"})
    except infer.InputError as error:
        out["unseen"] = str(error)
    print(json.dumps(out))
"""


def test_standalone_infer_on_raw_rows_matches_the_trainer(animals, tmp_path):
    folder, spec_path, model_path, _ = animals
    expected, data = trainer_predictions(folder, spec_path, model_path)
    rows = list(csv.reader(open(folder / "test.csv")))[1:]
    assert len(rows) == len(expected)
    columns = {name: j for j, name in enumerate(HEADER)}
    features = [[float(r[1]), r[2], float(r[4]) if r[4] else None] for r in rows]
    records = [{"size": float(r[1]), "color": r[2], "weight": float(r[4]) if r[4] else None,
                "id": r[0]} for r in rows]
    assert any(r[columns["weight"]] == "" for r in rows)  # the fill is exercised
    (tmp_path / "given.json").write_text(json.dumps({"rows": rows, "features": features,
                                                     "records": records}))
    out = run_standalone_infer(tmp_path, STANDALONE, model_path, tmp_path / "given.json")
    for key in ("rows", "features", "records"):
        np.testing.assert_allclose(out[key], expected, rtol=1e-5, atol=1e-6, err_msg=key)
    assert out["one"] == int(expected[0].argmax())
    assert "category 'purple'" in out["unseen"] and "data.unseen" in out["unseen"]


def test_data_info_shows_feature_ranges_and_missing_counts(animals):
    folder, spec_path, _, _ = animals
    result = invoke("data", "info", spec_path, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout[result.stdout.index("{"):])
    assert info["class_names"] == ANIMALS
    features = {f["name"]: f for f in info["train"]["features"]}
    assert list(features) == ["size", "color", "weight"]
    rows = list(csv.reader(open(folder / "train.csv")))[1:]
    sizes = [float(r[1]) for r in rows]
    assert features["size"]["min"] == min(sizes) and features["size"]["max"] == max(sizes)
    assert features["size"]["mean"] == pytest.approx(np.mean(sizes))
    assert features["weight"]["missing"] == sum(r[4] == "" for r in rows) > 0
    assert features["color"]["categories"] == 3 and features["color"]["min"] is None
    plain = invoke("data", "info", spec_path)
    assert "weight" in plain.output and "missing" in plain.output
    assert f"{min(sizes):.4g}" in plain.output


# ---------------------------------------------------------------- errors name the key


def run_error(folder: Path, train: str, test: str, spec_extra: str = "", inputs: int = 2) -> str:
    (folder / "train.csv").write_text(train)
    (folder / "test.csv").write_text(test)
    spec = folder / "s.toml"
    spec.write_text(f'spec_version = 1\nname = "s"\n[data]\nsource = "csv"\ntrain = "train.csv"\n'
                    f'test = "test.csv"\n{spec_extra}[data.validation]\ntake_from = "none"\n'
                    f'[network]\ninputs = {inputs}\n[[network.layers]]\ntype = "dense.v1"\n'
                    f'units = 2\n[train]\nepochs = 1\n')
    result = invoke("run", spec, "--out", folder / "out", "--cache-dir", folder / "cache")
    assert result.exit_code == 2, result.output
    assert "\nerror: " in "\n" + result.output
    return result.output


@pytest.mark.parametrize("train, test, extra, expected", [
    ("a,b,label\n1,2,0\n3,4,1\n", "1,2,0\n", "",
     r"line 1, column 2: expected .*found 'b'; .*set data.header = true"),
    ("a,b,label\n1,,x\n3,4,y\n", "a,b,label\n1,2,x\n", 'header = true\nlabel_column = "label"\n',
     r"data.train: .*line 2, column 2 \('b'\): missing value .*data.missing = \"mean\""),
    ("a,b,label\n1,2,x\n3,4,y\n", "a,b,label\n1,2,z\n", 'header = true\nlabel_column = -1\n',
     r"data.test: .*line 2, column 3 \('label', labels\): label 'z' is not among the classes of "
     r"data.train \('x', 'y'\)"),
    ("a,c,label\n1,red,x\n3,blue,y\n", "a,c,label\n1,pink,x\n",
     'header = true\nlabel_column = "label"\ncategorical = ["c"]\n',
     r"data.test: column 'c': category 'pink' is not in the training split .*data.unseen = \"ignore\""),
    ("a,b,label\n1,2,x\n3,4,y\n", "a,b,label\n1,2,x\n", 'header = true\nlabel_column = "kind"\n',
     r"data.label_column: no column 'kind' in the header \(columns: 'a', 'b', 'label'\)"),
    ("1,2,0\n3,4,1\n", "1,2,0\n", 'categorical = ["b"]\n',
     r"data.categorical names columns, which needs a header: set data.header = true"),
    ("a,b,label\n1,2,x\n3,4,y\n", "a,b,label\n1,2,x\n", 'header = true\nfeatures = ["a", "q"]\n'
     'label_column = "label"\n', r"data.features: no column 'q' in the header"),
    ("a,b,label\n1,two,x\n3,4,y\n", "a,b,label\n1,2,x\n", 'header = true\nlabel_column = "label"\n',
     r"line 2, column 2 \('b'\): expected a number, found 'two'; .*data.categorical"),
    ("a,b,label\n1,2,0\n3,4,5\n", "a,b,label\n1,2,0\n", 'header = true\nlabel_column = 2\nclasses = 2\n',
     r"data.classes: expected more than the largest label of data.train \(5\), found 2; set data.classes = 6"),
])
def test_data_errors_name_the_key_that_fixes_them(tmp_path, train, test, extra, expected):
    import re

    message = run_error(tmp_path, train, test, extra)
    assert re.search(expected, message), message


def test_label_column_by_negative_index_and_numeric_labels_as_names(tmp_path):
    (tmp_path / "train.csv").write_text("a,label,b\n1,3,2\n2,7,3\n3,3,4\n4,7,5\n")
    (tmp_path / "test.csv").write_text("a,label,b\n1,7,2\n")
    spec = tmp_path / "s.toml"
    spec.write_text('spec_version = 1\nname = "s"\n[data]\nsource = "csv"\ntrain = "train.csv"\n'
                    'test = "test.csv"\nheader = true\nlabel_column = -2\n[network]\ninputs = 2\n'
                    '[[network.layers]]\ntype = "dense.v1"\nunits = 2\n[train]\nepochs = 1\n')
    info = json.loads(invoke("data", "info", spec, "--json").stdout)
    assert info["class_names"] == ["3", "7"] and info["columns"] == ["a", "b"]
    assert info["train"]["class_counts"] == [2, 2] and info["test"]["class_counts"] == [0, 1]


# ---------------------------------------------------------------- infer.py policies


def tiny_model(tmp_path: Path, extra: str) -> infer.Model:
    write_csv(tmp_path / "train.csv", [["1", "2.0", "red", "cat", "1", "n"],
                                       ["2", "4.0", "blue", "dog", "2", "n"],
                                       ["3", "6.0", "red", "dog", "3", "n"]])
    write_csv(tmp_path / "test.csv", [["4", "3.0", "blue", "cat", "4", "n"]])
    (tmp_path / "s.toml").write_text(
        'spec_version = 1\nname = "tiny"\n[data]\nsource = "csv"\ntrain = "train.csv"\n'
        'test = "test.csv"\nheader = true\nlabel_column = "animal"\nfeatures = ["size", "color"]\n'
        f'categorical = ["color"]\n{extra}[data.preprocess]\nscale = "minmax"\n'
        '[data.validation]\ntake_from = "none"\n[network]\ninputs = 3\n'
        '[[network.layers]]\ntype = "dense.v1"\nunits = 2\n[train]\nepochs = 1\n')
    result = invoke("run", tmp_path / "s.toml", "--out", tmp_path / "out", "--cache-dir",
                    tmp_path / "cache")
    assert result.exit_code == 0, result.output
    return infer.load(tmp_path / "out" / "model.mlpm")


def test_infer_applies_minmax_fill_and_unseen_policies(tmp_path):
    model = tiny_model(tmp_path, 'missing = "most_frequent"\nunseen = "ignore"\n')
    assert model.scaling["kind"] == "minmax"
    # minmax fitted on train: size 2..6 -> 0..1; one-hot columns blue, red stay 0/1.
    np.testing.assert_allclose(model.preprocess([{"size": 4.0, "color": "red"}]), [[0.5, 0.0, 1.0]])
    # unseen = "ignore": all zeros; a missing colour takes the most frequent (red).
    np.testing.assert_allclose(model.preprocess([{"size": 2, "color": "pink"},
                                                 {"size": 6, "color": None}]),
                               [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    # most_frequent for numbers: sizes 2, 4, 6 tie -> the smallest.
    np.testing.assert_allclose(model.preprocess(np.array([["", "blue"]], dtype=object)), [[0.0, 1.0, 0.0]])
    # The input contract still guards numeric columns.
    with pytest.raises(infer.InputError, match="far outside"):
        model.predict([{"size": 1e6, "color": "red"}])


def test_infer_refuses_missing_and_unseen_when_trained_to(tmp_path):
    model = tiny_model(tmp_path, "")
    with pytest.raises(infer.InputError, match=r"row 0, column 'size': missing value.*data.missing"):
        model.predict([{"size": None, "color": "red"}])
    with pytest.raises(infer.InputError, match=r"category 'pink'.*data.unseen = \"error\""):
        model.predict(np.array([["9", "2.0", "pink", "cat", "1", "n"]], dtype=object))
    with pytest.raises(infer.InputError, match=r"expected rows of the 6 columns .* or of the 2 feature"):
        model.predict(np.zeros((1, 3)))
    with pytest.raises(infer.InputError, match=r"no value for column 'color'"):
        model.predict([{"size": 2.0}])


def test_unit_scaling_warns_when_the_data_is_not_pixels(tmp_path):
    (tmp_path / "train.csv").write_text("0,1,16\n1,3,2\n")
    (tmp_path / "test.csv").write_text("1,2,3\n")
    spec = tmp_path / "s.toml"
    spec.write_text('spec_version = 1\nname = "s"\n[data]\nsource = "csv"\ntrain = "train.csv"\n'
                    'test = "test.csv"\n[data.validation]\ntake_from = "none"\n[network]\ninputs = 2\n'
                    '[[network.layers]]\ntype = "dense.v1"\nunits = 2\n[train]\nepochs = 1\n')
    result = invoke("run", spec, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert result.output.count('warning: data.preprocess.scale = "unit" divides by 255') == 1
    assert "largest value is 16" in result.output
    spec.write_text(spec.read_text().replace("[data.validation]", '[data.preprocess]\nscale = "minmax"\n'
                                             "[data.validation]"))
    result = invoke("run", spec, "--out", tmp_path / "out2", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0 and "warning" not in result.output


def test_onnx_takes_encoded_rows_and_fills_missing_values(animals):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from mlpspec.onnx_export import to_onnx

    model = infer.load(animals[2])
    session = ort.InferenceSession(to_onnx(model))
    records = [{"size": 12.0, "color": "red", "weight": None},
               {"size": 31.0, "color": None, "weight": 95.0}]
    encoded = model.encode(records)  # fills the missing values as the model says
    holes = encoded.copy()
    holes[0, 4] = np.nan       # weight
    holes[1, 1:4] = np.nan     # every one-hot input of colour
    outputs = session.run(None, {"input": holes.astype(np.float32)})
    np.testing.assert_allclose(outputs[1], model.predict_proba(records), rtol=1e-5, atol=1e-6)
    meta = {p.key: p.value for p in __import__("onnx").load_from_string(to_onnx(model)).metadata_props}
    assert json.loads(meta["mlpspec.columns"])["features"][1]["categories"] == ["blue", "green", "red"]


def test_a_fractional_fill_is_accepted_although_training_values_were_whole(tmp_path):
    write_csv(tmp_path / "train.csv", [["1", "2", "red", "cat", "1", "n"],
                                       ["2", "4", "blue", "dog", "2", "n"],
                                       ["3", "7", "red", "dog", "3", "n"]])
    write_csv(tmp_path / "test.csv", [["4", "", "blue", "cat", "4", "n"]])
    (tmp_path / "s.toml").write_text(
        'spec_version = 1\nname = "tiny"\n[data]\nsource = "csv"\ntrain = "train.csv"\n'
        'test = "test.csv"\nheader = true\nlabel_column = "animal"\nfeatures = ["size"]\n'
        'missing = "mean"\n[data.preprocess]\nscale = "none"\n[data.validation]\ntake_from = "none"\n'
        '[network]\ninputs = 1\n[[network.layers]]\ntype = "dense.v1"\nunits = 2\n[train]\nepochs = 1\n')
    result = invoke("run", tmp_path / "s.toml", "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    model = infer.load(tmp_path / "out" / "model.mlpm")
    np.testing.assert_allclose(model.preprocess([{"size": None}]), [[13 / 3]], rtol=1e-6)


# ---------------------------------------------------------------- regression data (T2 trains it)


def test_npz_regression_targets_and_the_classes_key(tmp_path):
    from mlpspec.errors import DataError
    from mlpspec.spec import parse_spec

    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 10)):
        x = rng.normal(size=(n, 3))
        np.savez(tmp_path / f"{name}.npz", x=x, y=np.stack([x.sum(axis=1) * 10 + 5, x[:, 0]], axis=1))
    text = ('spec_version = 1\nname = "r"\n[data]\nsource = "npz"\ntrain = "train.npz"\n'
            'test = "test.npz"\n[data.validation]\ntake_from = "train"\nsize = 5\n'
            '[network]\ninputs = 3\n[[network.layers]]\ntype = "dense.v1"\nunits = 2\n'
            '[train]\nepochs = 1\n')
    from mlpspec.errors import SpecError

    with pytest.raises(SpecError, match=r"data.classes: expected the number of classes .*regression"):
        parse_spec(text, str(tmp_path / "r.toml"))
    regression = 'task = "regression"\n' + text + 'loss = {type = "mse.v1"}\n'
    spec = parse_spec(regression, str(tmp_path / "r.toml"))
    with pytest.raises(DataError, match=r"data.classes: expected the number of classes .*regression"):
        load_raw(spec.data, tmp_path)  # the loader refuses it on its own too
    raw = load_raw(spec.data, tmp_path, task="regression")
    assert raw.task == "regression" and raw.y_train.shape == (30, 2) and raw.classes == 0
    data = prepare(raw, spec.data, spec.seed, "float64")
    assert data.y_train.shape == (25, 2) and data.target_scaling.kind == "standardize"
    np.testing.assert_allclose(data.t_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(data.target_scaling.invert(data.t_train), data.y_train)
    info = raw.describe()
    assert [t["name"] for t in info["train"]["targets"]] == ["y0", "y1"]  # as the model file and predict name them and "class_counts" not in info["train"]


def test_numeric_files_take_the_fast_parser_and_read_the_same(tmp_path):
    from mlpspec.data.load import load_csv
    from mlpspec.data.tabular import read_table

    text = "a,b,label\n1,2.5,0\n\n3,4,1\n"
    fast = read_table("f", text.encode(), header=True, numeric=True)
    careful = read_table("f", text.encode(), header=True)
    assert fast.rows is None and careful.rows is not None
    assert fast.names == careful.names and fast.lines == careful.lines == [2, 4]
    assert [fast.cells(j) for j in range(3)] == [careful.cells(j) for j in range(3)]
    (tmp_path / "a.csv").write_text(text)
    data = load_csv(tmp_path / "a.csv", tmp_path / "a.csv", header=True, label_column="label")
    assert data.x_train.tolist() == [[1, 2.5], [3, 4]] and data.class_names == ("0", "1")
