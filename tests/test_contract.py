"""The model applies its own preprocessing, always (STYLE.md principle 13).

A model trained on float tabular features with `scale = "standardize"` scores
the same in `mlpspec run`, in `mlpspec evaluate MODEL --on SPEC` and through a
standalone copy of `infer.py` given the raw rows; input that cannot be what the
model was trained on is refused with a message, never answered.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlpspec import infer
from mlpspec.data.prepare import load_raw, prepare, split_validation
from mlpspec.spec import load_spec
from mlpspec.train import build_network

from conftest import invoke, npz_spec, relu_mlp, run_standalone_infer


# Wine-like features: a few units apart in some columns, hundreds in others,
# with means far from 0, so standardized features look nothing like raw ones.
FEATURE_MEANS = np.array([13.0, 2.3, 2.4, 19.5, 100.0, 2.3, 2.0, 0.36, 1.6, 5.0, 0.96, 2.6, 750.0])
FEATURE_SPREADS = np.array([0.8, 1.1, 0.27, 3.3, 14.0, 0.6, 1.0, 0.12, 0.57, 2.3, 0.23, 0.7, 315.0])

TABULAR = npz_spec("tabular", inputs=13, seed=3, data=(
    '[data.preprocess]\nscale = "standardize"\n'
    '[data.validation]\ntake_from = "train"\nsize = 30\n')) + relu_mlp(16) + """[train]
epochs = 30
batch_size = 16
[train.optimizer]
type = "adam.v1"
learning_rate = 0.01
"""


def tabular_rows(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 rows `(n, 13)` of three classes, each shifted by about one spread per class."""
    rng = np.random.default_rng(seed)
    shifts = np.random.default_rng(99).choice([-1.0, 1.0], (3, 13)) * np.arange(3)[:, None]
    y = rng.integers(0, 3, n)
    x = FEATURE_MEANS + FEATURE_SPREADS * (shifts[y] + rng.normal(0, 0.6, (n, 13)))
    return x, y




@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    """(folder, spec path, model path, run summary) of the tabular spec run through the CLI."""
    folder = tmp_path_factory.mktemp("tabular")
    for name, (seed, n) in {"train.npz": (0, 240), "test.npz": (1, 90)}.items():
        x, y = tabular_rows(seed, n)
        np.savez(folder / name, x=x, y=y)
    spec_path = folder / "tabular.toml"
    spec_path.write_text(TABULAR)
    result = invoke("run", spec_path, "--json", "--out", folder / "run", "--cache-dir", folder / "cache")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    return folder, spec_path, folder / "run" / "model.mlpm", summary


def test_evaluate_on_the_spec_matches_the_run(tabular_run):
    folder, spec_path, model_path, summary = tabular_run
    assert summary["test"]["accuracy"] > 0.9  # a trained model, so a wrong scaling shows
    result = invoke("evaluate", model_path, "--on", spec_path, "--json", "--out", folder / "evaluated")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output.strip().splitlines()[-1])
    assert evaluated["samples"] == summary["test"]["samples"] == 90
    assert evaluated["accuracy"] == summary["test"]["accuracy"]


# Run by conftest.run_standalone_infer: a copy of infer.py, mlpspec unimportable.
STANDALONE = """

    model = infer.load(sys.argv[2])
    rows = np.load(sys.argv[3])
    labels = model.predict(rows).tolist()
    one_at_a_time = [model.predict(row) for row in rows]
    try:
        model.predict(model.preprocess(rows))
    except infer.InputError as error:
        refused = str(error)
    else:
        refused = None
    print(json.dumps({"labels": labels, "one_at_a_time": one_at_a_time, "refused": refused}))
"""


def test_standalone_infer_on_raw_rows_matches_the_trainer(tabular_run, tmp_path):
    folder, spec_path, model_path, summary = tabular_run
    spec = load_spec(spec_path)
    raw = load_raw(spec.data, folder)
    data = prepare(raw, spec.data, spec.seed, spec.train.precision)
    network = build_network(spec)
    model = infer.load(model_path)
    network.load_state_dict({name: np.array(array) for name, array in model.tensors.items()})
    trainer_labels = network.predict(data.x_test).argmax(axis=1)  # what the run scored
    assert np.mean(trainer_labels == data.y_test) == summary["test"]["accuracy"]

    x_test = split_validation(raw, spec.data.validation, spec.seed)[4]
    assert x_test.dtype == np.float64
    np.save(tmp_path / "rows.npy", x_test)
    report = run_standalone_infer(tmp_path, STANDALONE, model_path, tmp_path / "rows.npy")
    assert report["labels"] == trainer_labels.tolist()
    assert report["one_at_a_time"] == trainer_labels.tolist()
    # Standardized rows handed to predict (which takes raw rows) are refused.
    assert report["refused"] is not None and "far outside" in report["refused"]


def test_prepared_features_go_through_their_own_call(tabular_run):
    folder, spec_path, model_path, summary = tabular_run
    model = infer.load(model_path)
    rows, _ = tabular_rows(5, 20)
    features = model.preprocess(rows)
    np.testing.assert_array_equal(model.logits_prepared(features), model.logits(rows))
    np.testing.assert_array_equal(model.predict_prepared(features), model.predict(rows))
    with pytest.raises(infer.InputError, match=r"^sample 0, feature 0: 1\d\.\d+ is far outside the "
                                               r"prepared values .*these look like raw samples"):
        model.predict_prepared(rows)
    with pytest.raises(TypeError):
        model.predict(features, raw=False)  # the old flag is gone, not silently ignored


def test_the_contract_is_stored(tabular_run):
    model = infer.load(tabular_run[2])
    assert model.format_version == infer.FORMAT_VERSION
    contract = model.input_contract
    assert contract["dtype"] == "float64" and contract["whole"] is False
    x_train, _ = tabular_rows(0, 240)
    # The training split: the 240 rows less the 30 held out for validation.
    assert np.all(contract["min"] >= x_train.min(axis=0)) and np.all(contract["max"] <= x_train.max(axis=0))
    assert np.all(contract["min"] < FEATURE_MEANS) and np.all(contract["max"] > FEATURE_MEANS)
    assert model.describe()["input"]["dtype"] == "float64"


def test_cli_predict_refuses_prepared_rows(tabular_run, tmp_path):
    folder, spec_path, model_path, summary = tabular_run
    model = infer.load(model_path)
    rows, _ = tabular_rows(6, 4)
    np.save(tmp_path / "raw.npy", rows)
    np.save(tmp_path / "prepared.npy", model.preprocess(rows))
    result = invoke("predict", model_path, tmp_path / "raw.npy", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["top"][0]["class"] for line in result.output.splitlines()] \
        == model.predict(rows).tolist()
    result = invoke("predict", model_path, tmp_path / "prepared.npy")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'prepared.npy'}: sample 0, feature 0: ")
    assert "far outside the values this feature had in training" in result.output


def test_evaluate_refuses_a_model_with_another_class_count(tabular_run, tmp_path):
    folder, spec_path, model_path, summary = tabular_run
    for classes in (2, 5):
        other = tmp_path / f"{classes}" / "tabular.toml"
        other.parent.mkdir()
        for name in ("train.npz", "test.npz"):
            with np.load(folder / name) as arrays:
                np.savez(other.parent / name, x=arrays["x"], y=arrays["y"] % classes
                         if classes < 3 else arrays["y"] + (arrays["y"] == 2) * 2)
        other.write_text(TABULAR.replace("classes = 3", f"classes = {classes}")
                         .replace("units = 3\n", f"units = {classes}\n"))
        result = invoke("evaluate", model_path, "--on", other, "--out", tmp_path / "out")
        assert result.exit_code == 2, result.output
        assert result.output == (f"error: {model_path}: the model has 3 classes (outputs) and the data "
                                 f"of tabular has {classes}; a score would compare unrelated labels\n")


def test_evaluate_out_must_not_be_a_file(tabular_run, tmp_path):
    folder, spec_path, model_path, summary = tabular_run
    (tmp_path / "taken").write_text("mine")
    result = invoke("evaluate", model_path, "--on", spec_path, "--out", tmp_path / "taken")
    assert result.exit_code == 2
    assert result.output == f"error: --out {tmp_path / 'taken'}: exists and is not a folder\n"
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("outputs", [5, 12])
def test_evaluate_on_mnist_refuses_a_model_with_another_class_count(mnist_env, tmp_path, outputs):
    """5 outputs used to end in an IndexError, 12 in a plausible score of unrelated labels."""
    from mlpspec.data.prepare import RawInput, Scaling
    from mlpspec.export import model_to_bytes
    from mlpspec.spec import parse_spec

    head = npz_spec("n", inputs=784).replace("classes = 3", f"classes = {outputs}")
    spec = parse_spec(head + f'[[network.layers]]\ntype = "dense.v1"\nunits = {outputs}\n[train]\nepochs = 1\n',
                      "n.toml")
    data = model_to_bytes(build_network(spec), spec, scaling=Scaling("unit", np.array(0.0), np.array(255.0)),
                          raw_input=RawInput("uint8", True, np.zeros(784), np.full(784, 255.0)),
                          sample_shape=(28, 28), class_names=tuple(map(str, range(outputs))),
                          metrics={}, checksums={}, cache_key="k")
    (tmp_path / "model.mlpm").write_bytes(data)
    result = invoke("evaluate", tmp_path / "model.mlpm", "--on", "mnist", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output == (f"error: {tmp_path / 'model.mlpm'}: the model has {outputs} classes (outputs) "
                             f"and the data of mnist has 10; a score would compare unrelated labels\n")
    assert not (tmp_path / "out").exists()


def test_float_pixels_that_were_whole_numbers_refuse_fractions():
    """Pixels read from a CSV file are float64 but whole: scaled pixels are refused all the same."""
    from mlpspec.data.load import RawDataset
    from mlpspec.data.prepare import RawInput
    from mlpspec.spec import parse_spec

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 4, 4)).astype(np.float64)
    labels = np.arange(40) % 3
    spec = parse_spec(npz_spec("px", inputs=16, data='[data.validation]\ntake_from = "none"\n')
                      + '[[network.layers]]\ntype = "dense.v1"\nunits = 3\n[train]\nepochs = 1\n', "px.toml")
    raw = RawDataset("csv", pixels, labels, pixels, labels, 3, ("a", "b", "c"), {})
    data = prepare(raw, spec.data, spec.seed, "float32")
    assert data.raw_input.whole and data.raw_input.dtype == "float64"
    assert not RawInput.of(pixels.reshape(40, 16) + 0.5).whole

    from mlpspec.export import model_to_bytes

    model = infer.load(model_to_bytes(build_network(spec), spec, scaling=data.scaling,
                                      raw_input=data.raw_input, sample_shape=(4, 4),
                                      class_names=("a", "b", "c"), metrics={}, checksums={}, cache_key="k"))
    np.testing.assert_array_equal(model.predict(pixels.astype(np.uint8)), model.predict(pixels))
    with pytest.raises(infer.InputError, match=r"is not a whole number, but the model was trained on raw "
                                               r"float64 values that were all whole numbers \(0 to 255\); "
                                               r"these look already scaled"):
        model.predict(pixels / 255)


def contract_model(raw_input, scaling, inputs: int):
    """A 3-class model of `inputs` features with this input contract and scaling (random weights)."""
    from mlpspec.export import model_to_bytes
    from mlpspec.spec import parse_spec

    spec = parse_spec(npz_spec("c", inputs=inputs, data='[data.validation]\ntake_from = "none"\n')
                      + '[[network.layers]]\ntype = "dense.v1"\nunits = 3\n[train]\nepochs = 1\n', "c.toml")
    return infer.load(model_to_bytes(build_network(spec), spec, scaling=scaling, raw_input=raw_input,
                                     sample_shape=(inputs,), class_names=("a", "b", "c"),
                                     metrics={}, checksums={}, cache_key="k"))


def contract_models():
    """(name, model, valid raw rows float64 (10000, 16)) for the contract kinds `_accepts` handles."""
    from mlpspec.data.prepare import RawInput, Scaling

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (10000, 16)).astype(np.float64)
    pixels[0], pixels[1] = 0, 255  # the training range's ends
    yield "uint8 pixels", contract_model(RawInput("uint8", True, np.zeros(16), np.full(16, 255.0)),
                                         Scaling("unit", np.array(0.0), np.array(255.0)), 16), pixels
    rows = FEATURE_MEANS[:8].repeat(2) + FEATURE_SPREADS[:8].repeat(2) * rng.normal(0, 1, (10000, 16))
    contract = RawInput.of(rows)
    scaling = Scaling("standardize", rows.mean(axis=0), rows.std(axis=0))
    yield "float features", contract_model(contract, scaling, 16), rows
    yield "whole float features", contract_model(RawInput("float64", True, contract.minimum,
                                                          contract.maximum), scaling, 16), np.round(rows)
    # A range too wide for float64 limits nothing: only NaN and infinity are refused.
    yield "unbounded", contract_model(RawInput("float64", False, np.full(16, -1e308), np.full(16, 1e308)),
                                      Scaling("none", np.array(0.0), np.array(1.0)), 16), rows


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 10000])  # one sample, a small batch, several blocks
def test_the_quick_input_test_refuses_what_the_full_check_refuses(dtype, n):
    """Float samples that pass `_accepts` skip the full checks, so it must never pass a bad value.

    The bad value sits in the last sample (the last block of a large batch);
    for each kind of contract: NaN, infinities, a value just past the accepted
    range (one step of the caller's dtype) and, where whole numbers are
    required, a fraction. Good samples pass the quick test, so it is used.
    """
    for name, model, rows in contract_models():
        good = rows[-n:].astype(dtype)
        if dtype is not np.float16 or name == "uint8 pixels":  # float16 rounds the contract's ends
            assert model._accepts(good, prepared=False), name
        model.predict(good)  # accepted, quick test or not
        low, high = model._bounds_as(np.dtype(dtype), prepared=False) if dtype is not np.float64 \
            else model._bounds["raw"][:2]
        low, high = np.broadcast_to(low, (16,)), np.broadcast_to(high, (16,))
        domain = model._bounds["domain"]
        if domain is not None:
            low, high = np.maximum(low, domain[0]).astype(dtype), np.minimum(high, domain[1]).astype(dtype)
        beyond = [v for v in (np.nextafter(high[5], dtype(np.inf)), np.nextafter(low[5], dtype(-np.inf)))
                  if np.isfinite(v)]
        fractions = [dtype(good[-1, 5]) + dtype(0.5)] if model.input_contract["whole"] else []
        for value in [np.nan, np.inf, -np.inf, *beyond, *fractions]:
            bad = good.copy()
            bad[-1, 5] = value
            if not np.isfinite(value) and dtype is np.float16 and np.isfinite(dtype(value)):
                continue
            assert not model._accepts(bad, prepared=False), (name, value)
            with pytest.raises(infer.InputError):
                model.predict(bad)
        # Prepared features: the same for predict_prepared's ranges (no whole numbers there).
        features = model.preprocess(good).astype(dtype)
        assert model._accepts(features, prepared=True) or dtype is np.float16, name
        model.predict_prepared(features)
        for value in (np.nan, np.inf, 1e4) if name != "unbounded" else (np.nan, np.inf, -np.inf):
            bad = features.copy()
            bad[-1, 5] = value
            assert not model._accepts(bad, prepared=True), (name, value)
            with pytest.raises(infer.InputError):
                model.predict_prepared(bad)
