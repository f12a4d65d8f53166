"""ONNX export: passes onnx.checker and matches mlpspec in onnxruntime (the `onnx` extra)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mlpspec import infer  # noqa: E402
from mlpspec.onnx_export import to_onnx  # noqa: E402

from test_infer import raw_blobs, trained  # noqa: E402


def session(data: bytes):
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("loss", ["softmax_cross_entropy.v1", "mse.v1"])
def test_every_layer_kind_matches_in_onnxruntime(loss):
    _, _, _, blob = trained(overrides=(f'train.loss={{ type = "{loss}" }}', "train.epochs=2"))
    model = infer.load(blob)
    data = to_onnx(model)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x_raw = raw_blobs(7, 64)[0]
    # The graph takes raw samples, as infer.py does, and applies the scaling itself.
    outputs = session(data).run(None, {"input": x_raw.astype(np.float32)})
    np.testing.assert_allclose(outputs[0], model.logits(x_raw), rtol=1e-5, atol=1e-5)
    if loss == "mse.v1":
        assert len(outputs) == 1
    else:
        np.testing.assert_allclose(outputs[1], model.predict_proba(x_raw), rtol=1e-5, atol=1e-6)
        assert (outputs[1].argmax(axis=1) == model.predict(x_raw)).all()


@pytest.mark.parametrize("scale", ["standardize", "unit", "none"])
def test_the_graph_applies_the_scaling_to_raw_input(scale):
    _, _, _, blob = trained(scale=scale, overrides=("train.epochs=1",))
    model = infer.load(blob)
    x_raw = raw_blobs(9, 50)[0]
    graph = onnx.load_from_string(to_onnx(model)).graph
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["N", 4, 5]
    ops = [n.op_type for n in graph.node][:3]
    assert ops == {"standardize": ["Reshape", "Sub", "Div"], "unit": ["Reshape", "Div", "Gemm"],
                   "none": ["Reshape", "Gemm", "BatchNormalization"]}[scale]
    run = session(to_onnx(model))
    logits = run.run(["logits"], {"input": x_raw.astype(np.float32)})[0]
    np.testing.assert_allclose(logits, model.logits(x_raw), rtol=1e-5, atol=1e-5)
    assert (logits.argmax(axis=1) == model.predict(x_raw)).all()
    assert run.run(["logits"], {"input": x_raw[:0].astype(np.float32)})[0].shape == (0, 3)
    # The first layer sees what infer.py's preprocess gives (bit for bit, float32).
    prepared = next(n for n in graph.node if n.op_type == "Gemm").input[0]
    probe = onnx.load_from_string(to_onnx(model))
    probe.graph.output.append(onnx.helper.make_tensor_value_info(prepared, onnx.TensorProto.FLOAT, None))
    features = session(probe.SerializeToString()).run([prepared], {"input": x_raw.astype(np.float32)})[0]
    np.testing.assert_array_equal(features, model.preprocess(x_raw))


def test_float64_model_exports_as_float32():
    _, _, _, blob = trained(precision="float64", overrides=("train.epochs=1",))
    model = infer.load(blob)
    x_raw = raw_blobs(8, 16)[0]
    logits = session(to_onnx(model)).run(["logits"], {"input": x_raw.astype(np.float32)})[0]
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, model.logits(x_raw), rtol=1e-4, atol=1e-5)


def test_metadata_records_the_preprocessing():
    from pathlib import Path

    model = infer.load(Path(__file__).parent / "model_files" / "v1.0.mlpm")
    props = {p.key: p.value for p in onnx.load_from_string(to_onnx(model)).metadata_props}
    assert props["mlpspec.classes"] == '["circle", "square", "triangle"]'
    assert props["mlpspec.sample_shape"] == "[4, 4]"
    assert '"kind": "unit"' in props["mlpspec.scaling"]
    assert props["mlpspec.input"] == "null"  # format 1.0 stores no input contract
    graph = onnx.load_from_string(to_onnx(model))
    x_raw = np.arange(2 * 16, dtype=np.uint8).reshape(2, 4, 4) * 7
    logits = session(graph.SerializeToString()).run(["logits"], {"input": x_raw.astype(np.float32)})[0]
    np.testing.assert_allclose(logits, model.logits(x_raw), rtol=1e-5, atol=1e-6)


def test_metadata_records_the_input_contract():
    import json

    model = infer.load(trained(overrides=("train.epochs=1",))[3])
    props = {p.key: p.value for p in onnx.load_from_string(to_onnx(model)).metadata_props}
    contract = json.loads(props["mlpspec.input"])
    assert contract["dtype"] == "uint8"
    assert contract["min"] == model.input_contract["min"].tolist() and len(contract["max"]) == 20
