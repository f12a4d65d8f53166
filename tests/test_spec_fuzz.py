"""Garbled and random specs and overrides end in SpecError, never in a traceback."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mlpspec.cli import app
from mlpspec.errors import SpecError
from mlpspec.spec import parse_spec, render_spec
from mlpspec.spec.toml_writer import dumps

from conftest import SPECS

VALID = (SPECS / "mnist.toml").read_text()

scalars = st.one_of(st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False,
                    allow_infinity=False), st.text(max_size=12))
keys = st.sampled_from(["type", "units", "rate", "layers", "inputs", "epochs", "source", "size",
                        "take_from", "x", "learning_rate", "optimizer", "data", "network", "train",
                        "seed", "name", "spec_version", "preprocess", "scale"]) | st.text(
    string.ascii_letters + "_-", min_size=1, max_size=8)
tables = st.recursive(
    st.dictionaries(keys, scalars, max_size=4),
    lambda children: st.dictionaries(keys, children | st.lists(children, max_size=3) | scalars,
                                     max_size=4),
    max_leaves=20,
)


def only_spec_errors(text: str, overrides=()) -> None:
    try:
        spec = parse_spec(text, "fuzz.toml", overrides)
    except SpecError as error:
        assert error.problems and all(str(p).strip() for p in error.problems)
    else:
        assert parse_spec(render_spec(spec)) == spec


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_spec(data):
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["delete", "insert", "replace", "drop_line"]))
        if action == "delete":
            text = text[:position] + text[position + data.draw(st.integers(1, 20)):]
        elif action == "insert":
            text = text[:position] + data.draw(st.text(max_size=8)) + text[position:]
        elif action == "replace":
            text = text[:position] + data.draw(st.sampled_from(
                ['"', "=", "[", "]", "0", "-1", "1e999", "true", "\n", ".", "[[x]]"])) + text[position + 1:]
        else:
            lines = text.splitlines()
            if lines:
                del lines[position % len(lines)]
            text = "\n".join(lines)
    only_spec_errors(text)


@settings(max_examples=300, deadline=None)
@given(tables)
def test_random_documents(document):
    only_spec_errors(dumps(document))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["train.epochs", "network.layers[0].units", "network.layers[1].type",
                     "data.source", "data.validation.size", "train.optimizer", "seed", "x.y[2]",
                     "network.layers[7]", "train.schedule.type", "network", "data.preprocess.scale"])
    | st.text(max_size=15),
    st.text(max_size=15) | st.sampled_from(['"adam.v1"', "{ type = \"sgd.v1\" }", "[1, 2]", "0.5",
                                            "-3", "fashion-mnist", "1e999", "nan", "inf"])),
    max_size=4))
def test_random_overrides(pairs):
    only_spec_errors(VALID, [f"{k}={v}" for k, v in pairs])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables, st.lists(st.text(max_size=20), max_size=2))
def test_cli_never_shows_a_traceback(tmp_path, document, overrides):
    spec = tmp_path / "fuzz.toml"
    spec.write_text(dumps(document))
    args = ["validate", str(spec)]
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
