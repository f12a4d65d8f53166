"""`mlpspec predict`, `inspect` and `export` as a user meets them: output, exit codes, no tracebacks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import typer

from mlpspec import cli_model, infer
from mlpspec.data.idx import encode_idx

from conftest import invoke

V1_0 = Path(__file__).parent / "model_files" / "v1.0.mlpm"
PINNED_INPUTS = np.arange(2 * 16, dtype=np.uint8).reshape(2, 4, 4) * 7

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
cli_model.register(app)




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
    np.save(tmp_path / "pixels.npy", PINNED_INPUTS.astype(np.float32))  # raw values in another dtype
    result = invoke("predict", V1_0, tmp_path / "pixels.npy", "--top", "5", "--json")
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
    # A grey ramp, not ink on paper: --invert no keeps it as it is.
    result = invoke("predict", V1_0, tmp_path / "digit.png", tmp_path / "rgb.png", "--json",
                    "--invert", "no")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert rows[0]["top"][0]["label"] == "triangle" and rows[0]["index"] is None
    assert rows[0]["top"] == rows[1]["top"]  # grey RGB converts to the same grey levels

    # Another size is resized (MNIST's recipe, tested in test_predict_images.py).
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "big.png")
    result = invoke("predict", V1_0, tmp_path / "big.png")
    assert result.exit_code == 0, result.output


def test_predict_bad_inputs(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    pytest.importorskip("PIL")
    result = invoke("predict", V1_0, tmp_path / "broken.png")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'broken.png'}: cannot read the image")

    np.save(tmp_path / "wrong.npy", np.zeros((3, 5, 5), np.uint8))
    result = invoke("predict", V1_0, tmp_path / "wrong.npy")
    assert result.exit_code == 2
    assert result.output == (f"error: {tmp_path / 'wrong.npy'}: expected raw samples of shape (4, 4) "
                             f"or (n, 4, 4); found uint8 of shape (3, 5, 5)\n")

    # Prepared features are not samples: the model takes raw ones.
    np.save(tmp_path / "features.npy", infer.load(V1_0).preprocess(PINNED_INPUTS))
    result = invoke("predict", V1_0, tmp_path / "features.npy")
    assert result.exit_code == 2
    assert result.output == (f"error: {tmp_path / 'features.npy'}: expected raw samples of shape (4, 4) "
                             f"or (n, 4, 4); found float32 of shape (2, 16); prepared features of shape "
                             f"(n, 16) go to predict_prepared()\n")

    (tmp_path / "notes.txt").write_text("hello")
    result = invoke("predict", V1_0, tmp_path / "notes.txt")
    assert result.exit_code == 2
    assert "(inputs are images, .npy, .npz, .csv or IDX files)" in result.output

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
    assert "input        4 x 4 -> 16 features, no input contract (format 1.0), scaling unit" in text
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
    assert result.output == (f"{tmp_path / 'model.onnx'}: ONNX, {(tmp_path / 'model.onnx').stat().st_size} "
                             f"bytes (input: raw samples as float32 (N, 4, 4); the graph applies the "
                             f"scaling)\n")
    model = infer.load(V1_0)
    raw = PINNED_INPUTS.astype(np.float32)
    np.testing.assert_allclose(session.run(["logits"], {"input": raw})[0], model.logits(PINNED_INPUTS),
                               rtol=1e-5, atol=1e-6)


def test_export_unknown_format(tmp_path):
    result = invoke("export", V1_0, "--format", "tflite", "-o", tmp_path / "model.tflite")
    assert result.exit_code == 2
    assert result.output == "error: --format: unknown format 'tflite'; available: onnx\n"


# ---------------------------------------------------------------- hostile text in model files

V1_1 = Path(__file__).parent / "model_files" / "v1.1.mlpm"


def model_document(path: Path = V1_1) -> dict:
    import msgpack

    document = msgpack.unpackb(path.read_bytes(), raw=False)
    document.pop("checksum")
    return document


def terminal_safe(text: str, keep: str = "\n") -> bool:
    """No control character, escape sequence or other non-printing character but those in `keep`."""
    return all(c.isprintable() or c in keep for c in text)


def test_class_names_reach_the_terminal_escaped(tmp_path):
    document = model_document()
    document["classes"] = ["\x1b[31mred\x1b[0m", "two\nlines", "\u202eevil"]
    document["metrics"]["\x07bell"] = "\x1b]0;title\x07"
    path = tmp_path / "hostile.mlpm"
    path.write_bytes(infer.encode(document))
    shown = invoke("inspect", path).output
    assert terminal_safe(shown)
    assert r"\x1b[31mred\x1b[0m, two\nlines, \u202eevil" in shown
    assert r"\x07bell" in shown and r"\x1b]0;title\x07" in shown
    np.save(tmp_path / "rows.npy", np.array([[12.5, 1.5, 95.0, 0.25, 500.0, -6.0]]))
    result = invoke("predict", path, tmp_path / "rows.npy", "--top", "3")
    assert result.exit_code == 0 and terminal_safe(result.output) and r"\u202eevil (" in result.output
    rows = invoke("predict", path, tmp_path / "rows.npy", "--json").output
    assert terminal_safe(rows) and json.loads(rows)["top"][0]["label"] in document["classes"]


def test_inspect_spec_text_is_escaped_and_non_text_refused(tmp_path):
    document = model_document()
    document["provenance"]["spec"] = 'name = "x"\n\x1b[2J\tend\n'
    path = tmp_path / "a.mlpm"
    path.write_bytes(infer.encode(document))
    assert invoke("inspect", path, "--spec").output == 'name = "x"\n\\x1b[2J\tend\n'
    document["provenance"]["spec"] = b"\x1b[2J"
    path.write_bytes(infer.encode(document))
    result = invoke("inspect", path, "--spec")
    assert result.exit_code == 2
    assert result.output == f"error: {path}: provenance.spec: expected the spec as text, found bytes\n"


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

odd_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=12)
    | st.binary(max_size=12) | st.just("\x1b[31m\u202e\x00"),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8)
ODD_PLACES = [("metrics",), ("metrics", "accuracy"), ("metrics", "\x1b[1mnew"), ("provenance",),
              ("provenance", "checksums"), ("provenance", "checksums", "train"), ("provenance", "spec"),
              ("provenance", "cache_key"), ("architecture", "layers", 0, "settings", "init"),
              ("architecture", "layers", 1, "settings", "odd"), ("architecture", "loss"), ("writer",),
              ("created",), ("classes", 1)]


def strict_json(constant: str):
    raise AssertionError(f"{constant} is not JSON")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from([V1_0, V1_1]), where=st.sampled_from(ODD_PLACES), value=odd_values)
def test_inspect_never_tracebacks_on_a_file_infer_accepts(tmp_path, base, where, value):
    document = model_document(base)
    parent = document
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    data = infer.encode(document)
    try:
        infer.load(data)
    except infer.ModelFormatError:
        return  # refused by the reader: inspect says so (tested above)
    path = tmp_path / "odd.mlpm"
    path.write_bytes(data)
    plain = invoke("inspect", path)
    assert plain.exit_code == 0, plain.output
    assert terminal_safe(plain.output)
    described = invoke("inspect", path, "--json")
    assert described.exit_code == 0 and terminal_safe(described.output)
    json.loads(described.output, parse_constant=strict_json)  # no NaN, no bytes
    spec = invoke("inspect", path, "--spec")
    assert spec.exit_code in (0, 2) and terminal_safe(spec.output, keep="\n\t")
