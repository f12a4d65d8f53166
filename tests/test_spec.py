"""The spec language: good specs load, bad ones give every problem, exactly worded."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mlpspec.errors import SpecError
from mlpspec.spec import load_spec, parse_spec, render_spec
from mlpspec.spec.model import DenseLayer, MnistSource, ReluLayer
from mlpspec.spec.reference import spec_reference

from conftest import REPO, SPECS

MINIMAL = """
spec_version = 1
name = "t"
[data]
source = "mnist"
[network]
inputs = 784
[[network.layers]]
type = "dense.v1"
units = 10
[train]
epochs = 1
"""


def problems(text: str, overrides=()) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "s.toml", overrides)
    return [str(p) for p in info.value.problems]


def test_minimal_spec_fills_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.seed == 0
    assert isinstance(spec.data.source, MnistSource)
    assert spec.network.layers == (DenseLayer(units=10),)
    assert spec.train.batch_size == 128
    assert spec.data.validation.size == 0.1


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid_and_render_to_themselves(path: Path):
    spec = load_spec(path)
    text = render_spec(spec)
    assert parse_spec(text) == spec
    assert render_spec(parse_spec(text)) == text


def test_render_is_valid_toml_with_every_default():
    rendered = tomllib.loads(render_spec(parse_spec(MINIMAL)))
    assert rendered["train"]["optimizer"] == {"type": "sgd.v1", "learning_rate": 0.1}
    assert rendered["network"]["layers"] == [
        {"type": "dense.v1", "units": 10, "init": "he_normal", "std": 0.01}]
    assert rendered["data"]["mirrors"] == []


BAD = [
    # (description, text edit, overrides, exact messages)
    ("misspelt key", ("[network]", "[network]\nlayrs = 3"), (),
     ["s.toml: network.layrs: unknown key; did you mean 'layers'?"]),
    ("missing required", ("epochs = 1", ""), (),
     ["s.toml: train.epochs: required key is missing"]),
    ("wrong type", ("epochs = 1", 'epochs = "ten"'), (),
     ["s.toml: train.epochs: expected an integer, found a string 'ten'"]),
    ("bool is not int", ("epochs = 1", "epochs = true"), (),
     ["s.toml: train.epochs: expected an integer, found a boolean true"]),
    ("float is not int", ("epochs = 1", "epochs = 1.5"), (),
     ["s.toml: train.epochs: expected an integer, found a float 1.5"]),
    ("out of range", ("units = 10", "units = 0"), (),
     ["s.toml: network.layers[0].units: expected a value in [1, 1000000], found an integer 0"]),
    ("unknown layer type", ('type = "dense.v1"', 'type = "dense"'), (),
     ["s.toml: network.layers[0].type: expected one of 'dense.v1', 'relu.v1', 'leaky_relu.v1', "
      "'sigmoid.v1', 'tanh.v1', 'gelu.v1', 'dropout.v1', 'batchnorm.v1', found a string 'dense'; "
      "did you mean 'dense.v1'?"]),
    ("key of another variant", ("units = 10", "units = 10\nrate = 0.5"), (),
     ["s.toml: network.layers[0].rate: unknown key for type 'dense.v1'"]),
    ("first layer vs features", ("inputs = 784", "inputs = 100"), (),
     ["s.toml: network.inputs: expected 784 (mnist samples flatten to 784 features), found 100"]),
    ("output vs classes", ("units = 10", "units = 12"), (),
     ["s.toml: network.layers[0].units: expected 10 (the number of classes in mnist; the last "
      "dense layer is the output), found 12"]),
    ("loss vs output", ("units = 10", 'units = 10\n[[network.layers]]\ntype = "relu.v1"'), (),
     ["s.toml: network.layers[1].type: expected no layer after the output layer [0]: "
      "'softmax_cross_entropy.v1' applies softmax to its outputs itself, found 'relu.v1'"]),
    ("validation split too big", ("epochs = 1", "epochs = 1"),
     ("data.validation.take_from=test", "data.validation.size=10000"),
     ["--set data.validation.size=10000: data.validation.size: expected fewer than the 10000 "
      "samples of the mnist test set (some must remain), found 10000; set data.validation.size "
      "to a smaller count such as 1000 or a fraction such as 0.1, or "
      "data.validation.take_from = \"train\""]),
    ("fraction out of range", ("epochs = 1", "epochs = 1"), ("data.validation.size=1.5",),
     ["--set data.validation.size=1.5: data.validation.size: expected an integer count or a "
      "fraction in (0, 1), found 1.5"]),
    ("mse needs one-hot", ("epochs = 1", 'epochs = 1\nloss = { type = "mse.v1" }'),
     ("data.preprocess.one_hot=false",),
     ["--set data.preprocess.one_hot=false: data.preprocess.one_hot: expected true: 'mse.v1' "
      "compares the outputs with one-hot targets, found false"]),
    ("early stopping without validation", ("epochs = 1", "epochs = 1"),
     ("data.validation.take_from=none", "train.early_stopping.patience=3"),
     ["--set train.early_stopping.patience=3: train.early_stopping.patience: expected 0: early "
      "stopping needs a validation set and data.validation.take_from is 'none', found 3 "
      "(or set train.early_stopping.metric = 'train_loss')"]),
    ("spec version", ("spec_version = 1", "spec_version = 2"), (),
     ["s.toml: spec_version: expected one of 1, found an integer 2"]),
    ("bad name", ('name = "t"', 'name = "a b"'), (),
     ["s.toml: name: expected letters, digits, '_', '.' or '-', at most 100, starting with a "
      "letter or digit, found a string 'a b'"]),
    ("table expected", ("[network]", "preprocess = 3\n[network]"), (),
     ["s.toml: data.preprocess: expected a table, found an integer 3"]),
]


@pytest.mark.parametrize("description,edit,overrides,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_specs_exact_messages(description, edit, overrides, expected):
    old, new = edit
    assert old in MINIMAL
    assert problems(MINIMAL.replace(old, new, 1), overrides) == expected


def test_all_problems_reported_at_once():
    text = MINIMAL.replace("epochs = 1", "epochs = 0\nbatch_size = -1\nspeed = 3")
    text = text.replace("units = 10", "units = 10\ninit = \"he_norml\"")
    assert problems(text) == [
        "s.toml: network.layers[0].init: expected one of 'normal', 'he_normal', 'he_uniform', "
        "'glorot_normal', 'glorot_uniform', found a string 'he_norml'; did you mean 'he_normal'?",
        "s.toml: train.epochs: expected a value in [1, 100000], found an integer 0",
        "s.toml: train.batch_size: expected a value in [1, 1000000], found an integer -1",
        "s.toml: train.speed: unknown key",
    ]


def test_toml_syntax_error_keeps_line_and_column():
    [message] = problems(MINIMAL.replace("units = 10", "units = = 10"))
    assert message.startswith("s.toml: invalid TOML: ")
    assert "line 10, column" in message


def test_missing_file_and_bad_encoding(tmp_path):
    with pytest.raises(SpecError, match=r"nope.toml: cannot read the file"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"name = \"\xff\"\n")
    with pytest.raises(SpecError, match=r"bad.toml: expected UTF-8 text, found byte 0xff at offset 8"):
        load_spec(bad)


OVERRIDES = [
    ("train.epochs=3", lambda s: s.train.epochs == 3),
    ("network.layers[0].init=normal", lambda s: s.network.layers[0].init == "normal"),
    ('train.optimizer={ type = "adam.v1", learning_rate = 0.01 }',
     lambda s: s.train.optimizer.learning_rate == 0.01),
    ("data.validation.size=0.1", lambda s: s.data.validation.size == 0.1),
    ("data.source=fashion-mnist", lambda s: type(s.data.source).__name__ == "FashionMnistSource"),
    ("seed = 7", lambda s: s.seed == 7),
]


@pytest.mark.parametrize("override,check", OVERRIDES, ids=[o[0] for o in OVERRIDES])
def test_overrides(override, check):
    assert check(parse_spec(MINIMAL, "s.toml", [override]))


@pytest.mark.parametrize("override,expected", [
    ("train.epochs", "--set train.epochs: expected KEY=VALUE, found no '='"),
    ("train..epochs=1", "--set train..epochs=1: expected a key path like train.epochs or "
                        "network.layers[0].units, found 'train..epochs'"),
    ("train.epochs=[1,", "--set train.epochs=[1,: expected a TOML value, found '[1,' "
                         "(Invalid value (at end of document))"),
    ("seed.x=1", "--set seed.x=1: seed: expected an integer, found a table"),
    ("network.layers[3].units=1", "--set network.layers[3].units=1: network.layers[3]: no such "
                                  "element: network.layers has 1 entries"),
    ("train.epochs=abc", "--set train.epochs=abc: train.epochs: expected an integer, "
                         "found a string 'abc'"),
])
def test_bad_overrides(override, expected):
    assert problems(MINIMAL, [override]) == [expected]


def test_local_source_keys():
    text = MINIMAL.replace('source = "mnist"', 'source = "npz"\ntrain = "a.npz"\ntest = "b.npz"\n'
                           'classes = 10\nmirrors = []')
    assert problems(text) == ["s.toml: data.mirrors: unknown key for source 'npz'"]
    spec = parse_spec(text.replace("mirrors = []", ""))
    assert spec.data.source.train == "a.npz"


def test_reference_doc_is_current():
    committed = (REPO / "docs" / "spec.md").read_text()
    assert committed == spec_reference(), "run: python -m mlpspec.spec.reference > docs/spec.md"


def test_reference_doc_lists_every_key():
    reference = spec_reference()
    for key in ("train.regularization.l2", "network.layers[].units", "data.validation.take_from",
                "train.early_stopping.patience", "evaluate.misclassified", "data.label_column"):
        assert f"`{key}`" in reference
