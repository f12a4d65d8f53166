"""`mlpspec predict`, `inspect` and `export` as a user meets them: output, exit codes, no tracebacks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from mlpspec import cli_model, infer
from mlpspec.data.idx import encode_idx

V1_0 = Path(__file__).parent / "model_files" / "v1.0.mlpm"
PINNED_INPUTS = np.arange(2 * 16, dtype=np.uint8).reshape(2, 4, 4) * 7

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
cli_model.register(app)
runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_predict_npy_batch_and_single(tmp_path):
    np.save(tmp_path / "batch.npy", PINNED_INPUTS)
    np.save(tmp_path / "one.npy", PINNED_INPUTS[0])
    result = invoke("predict", V1_0, tmp_path / "batch.npy", tmp_path / "one.npy")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'batch.npy'}[0]: triangle (0.")
    assert lines[1].startswith(f"{tmp_path / 'batch.npy'}[1]: triangle (")
    assert lines[2].startswith(f"{tmp_path / 'one.npy'}: triangle (")


def test_predict_top_k_json(tmp_path):
    np.save(tmp_path / "features.npy", infer.load(V1_0).preprocess(PINNED_INPUTS))
    result = invoke("predict", V1_0, tmp_path / "features.npy", "--top", "5", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [row["index"] for row in rows] == [0, 1]
    top = rows[0]["top"]
    assert [entry["label"] for entry in top] == ["triangle", "circle", "square"]  # K capped at 3
    expected = infer.load(V1_0).predict_proba(PINNED_INPUTS)[0]
    assert [entry["probability"] for entry in top] == pytest.approx(sorted(expected, reverse=True))


def test_predict_idx_gzip(tmp_path):
    (tmp_path / "images.idx.gz").write_bytes(gzip.compress(encode_idx(PINNED_INPUTS)))
    result = invoke("predict", V1_0, tmp_path / "images.idx.gz")
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 2


def test_predict_png(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(PINNED_INPUTS[1]).save(tmp_path / "digit.png")
    Image.fromarray(np.dstack([PINNED_INPUTS[1]] * 3)).convert("RGB").save(tmp_path / "rgb.png")
    result = invoke("predict", V1_0, tmp_path / "digit.png", tmp_path / "rgb.png", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert rows[0]["top"][0]["label"] == "triangle" and rows[0]["index"] is None
    assert rows[0]["top"] == rows[1]["top"]  # grey RGB converts to the same grey levels

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "big.png")
    result = invoke("predict", V1_0, tmp_path / "big.png")
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'big.png'}: the image is 28x28 pixels; the model expects 4x4\n"


def test_predict_bad_inputs(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    pytest.importorskip("PIL")
    result = invoke("predict", V1_0, tmp_path / "broken.png")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'broken.png'}: cannot read the image")

    np.save(tmp_path / "wrong.npy", np.zeros((3, 5, 5), np.uint8))
    result = invoke("predict", V1_0, tmp_path / "wrong.npy")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'wrong.npy'}: expected raw uint8 samples of "
                                    f"shape (4, 4) or (n, 4, 4)")
    assert "found uint8 of shape (3, 5, 5)" in result.output

    (tmp_path / "notes.txt").write_text("hello")
    result = invoke("predict", V1_0, tmp_path / "notes.txt")
    assert result.exit_code == 2
    assert "(inputs are images, .npy or IDX files)" in result.output

    result = invoke("predict", V1_0, tmp_path / "missing.npy")
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'missing.npy'}: no such file\n"


def test_bad_model_file_is_one_clean_line(tmp_path):
    damaged = bytearray(V1_0.read_bytes())
    damaged[1000] ^= 0x10
    (tmp_path / "damaged.mlpm").write_bytes(bytes(damaged))
    np.save(tmp_path / "x.npy", PINNED_INPUTS)
    for command in (["predict", tmp_path / "damaged.mlpm", tmp_path / "x.npy"],
                    ["inspect", tmp_path / "damaged.mlpm"]):
        result = invoke(*command)
        assert result.exit_code == 2
        assert result.output.startswith(f"error: {tmp_path / 'damaged.mlpm'}: checksum: mismatch")
    result = invoke("inspect", tmp_path / "nothing.mlpm")
    assert result.exit_code == 2
    assert result.output == (f"error: {tmp_path / 'nothing.mlpm'}: cannot read the file: "
                             f"No such file or directory\n")


def test_inspect_text_json_and_spec():
    result = invoke("inspect", V1_0)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "format       mlpspec-model 1.0, written by mlpspec 0.1.0" in text
    assert "input        4 x 4 -> 16 features, scaling unit" in text
    assert "parameters   " in text and "circle, square, triangle" in text
    assert "  0   dense.v1       16 -> 6        units=6, init=he_normal, std=0.01" in text
    assert "  accuracy             0.875" in text
    assert f"  cache key          {'ab' * 32}" in text

    described = json.loads(invoke("inspect", V1_0, "--json").output)
    assert described["format_version"] == [1, 0]
    assert described["parameter_count"] == infer.load(V1_0).parameter_count
    assert described["metrics"]["samples"] == 8

    spec = invoke("inspect", V1_0, "--spec").output
    assert spec.startswith("spec_version = 1\n") and 'name = "fixture-v1.0"' in spec


def test_export_onnx(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    result = invoke("export", V1_0, "--format", "onnx", "-o", tmp_path / "model.onnx")
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    model = infer.load(V1_0)
    features = model.preprocess(PINNED_INPUTS)
    np.testing.assert_allclose(session.run(["logits"], {"input": features})[0], model.logits(features),
                               rtol=1e-5, atol=1e-6)


def test_export_unknown_format(tmp_path):
    result = invoke("export", V1_0, "--format", "tflite", "-o", tmp_path / "model.tflite")
    assert result.exit_code == 2
    assert result.output == "error: --format: unknown format 'tflite'; available: onnx\n"
