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
    features = model.preprocess(raw_blobs(7, 64)[0])
    outputs = session(data).run(None, {"input": features})
    np.testing.assert_allclose(outputs[0], model.logits(features), rtol=1e-5, atol=1e-5)
    if loss == "mse.v1":
        assert len(outputs) == 1
    else:
        np.testing.assert_allclose(outputs[1], model.predict_proba(features), rtol=1e-5, atol=1e-6)
        assert (outputs[1].argmax(axis=1) == model.predict(features)).all()


def test_float64_model_exports_as_float32():
    _, _, _, blob = trained(precision="float64", overrides=("train.epochs=1",))
    model = infer.load(blob)
    features = model.preprocess(raw_blobs(8, 16)[0])
    logits = session(to_onnx(model)).run(["logits"], {"input": features.astype(np.float32)})[0]
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, model.logits(features), rtol=1e-4, atol=1e-5)


def test_metadata_records_the_preprocessing():
    from pathlib import Path

    model = infer.load(Path(__file__).parent / "model_files" / "v1.0.mlpm")
    props = {p.key: p.value for p in onnx.load_from_string(to_onnx(model)).metadata_props}
    assert props["mlpspec.classes"] == '["circle", "square", "triangle"]'
    assert props["mlpspec.sample_shape"] == "[4, 4]"
    assert '"kind": "unit"' in props["mlpspec.scaling"]
