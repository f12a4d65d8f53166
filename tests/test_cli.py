"""The command line as a user meets it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from mlpspec.cli import app

from conftest import SPECS

runner = CliRunner()
MNIST = str(SPECS / "mnist.toml")


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_validate_ok():
    result = invoke("validate", MNIST)
    assert result.exit_code == 0
    assert result.output.strip() == f"{MNIST}: valid"


def test_validate_misspelt_key_suggests(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text((SPECS / "mnist.toml").read_text().replace("[network]\n", "[network]\nlayrs = 2\n"))
    result = invoke("validate", str(spec))
    assert result.exit_code == 2
    assert f"{spec}: network.layrs: unknown key; did you mean 'layers'?" in result.output
    assert result.output.startswith("error: the spec has 1 problem:")


def test_validate_set_problems_name_the_override():
    result = invoke("validate", MNIST, "--set", "train.epochs=0", "--set", "train.batch_sise=3")
    assert result.exit_code == 2
    assert "error: the spec has 2 problems:" in result.output
    assert "--set train.epochs=0: train.epochs: expected a value in [1, 100000], found an integer 0" in result.output
    assert "--set train.batch_sise=3: train.batch_sise: unknown key; did you mean 'batch_size'?" in result.output


def test_validate_missing_file():
    result = invoke("validate", "no/such/spec.toml")
    assert result.exit_code == 2
    assert "no/such/spec.toml: cannot read the file" in result.output


def test_render_round_trips(tmp_path):
    first = invoke("render", MNIST, "--set", "train.epochs=3")
    assert first.exit_code == 0
    assert tomllib.loads(first.output)["train"]["epochs"] == 3
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(first.output)
    assert invoke("render", str(rendered)).output == first.output


def test_bad_cli_usage_exits_2():
    assert invoke("validate").exit_code == 2
    assert invoke("frobnicate").exit_code == 2
    assert invoke("data", "info", "no-such-dataset").exit_code == 2


def test_data_info_mnist(mnist_env):
    first = invoke("data", "info", "mnist")
    assert first.exit_code == 0, first.output
    assert "dataset   mnist  (10 classes)" in first.output
    result = invoke("data", "info", "mnist", "--json")
    assert "fetching" not in result.output  # the verified files in the data home are reused
    info = json.loads(result.output)
    assert info["train"]["samples"] == 60000 and info["test"]["samples"] == 10000
    assert info["train"]["shape"] == [28, 28]
    assert sum(info["test"]["class_counts"]) == 10000
    assert info["checksums"]["train-images-idx3-ubyte"] == (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db")


@pytest.mark.slow
def test_run_one_epoch(mnist_env, tmp_path):
    result = invoke("run", MNIST, "--set", "train.epochs=1", "--json", "--out",
                    str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["test"]["samples"] == 5000
    assert summary["test"]["accuracy"] > 0.8
