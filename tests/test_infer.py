"""The standalone reader: same outputs as the trainer, alone in a process without mlpspec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mlpspec import infer
from mlpspec.data.prepare import Prepared, Scaling, fit_scaling, one_hot
from mlpspec.export import model_to_bytes
from mlpspec.spec import parse_spec
from mlpspec.train import fit

from conftest import npz_spec

INFER_SOURCE = Path(infer.__file__)

EVERY_LAYER = npz_spec("every-layer", inputs=20, seed=5) + """
[[network.layers]]
type = "dense.v1"
units = 24
[[network.layers]]
type = "batchnorm.v1"
[[network.layers]]
type = "relu.v1"
[[network.layers]]
type = "dropout.v1"
rate = 0.1
[[network.layers]]
type = "dense.v1"
units = 16
[[network.layers]]
type = "leaky_relu.v1"
alpha = 0.1
[[network.layers]]
type = "dense.v1"
units = 16
[[network.layers]]
type = "gelu.v1"
[[network.layers]]
type = "dense.v1"
units = 12
[[network.layers]]
type = "sigmoid.v1"
[[network.layers]]
type = "dense.v1"
units = 12
[[network.layers]]
type = "tanh.v1"
[[network.layers]]
type = "dense.v1"
units = 3
[train]
epochs = 3
batch_size = 32
[train.optimizer]
type = "adam.v1"
learning_rate = 0.01
"""


def raw_blobs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 "images" `(n, 4, 5)` of three classes, and their labels."""
    centers = np.random.default_rng(0).uniform(40, 215, (3, 20))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.clip(centers[y] + rng.normal(0, 30, (n, 20)), 0, 255).astype(np.uint8)
    return x.reshape(n, 4, 5), y


def trained(spec_text: str = EVERY_LAYER, scale: str = "standardize", precision: str = "float32",
            overrides: tuple[str, ...] = ()):
    """(network, spec, scaling, model bytes) trained a few epochs on raw uint8 blobs."""
    spec = parse_spec(spec_text, "every-layer.toml", (f'train.precision="{precision}"', *overrides))
    dtype = np.dtype(precision)
    x_raw, y = raw_blobs(0, 300)
    flat = x_raw.reshape(len(x_raw), -1)
    scaling = fit_scaling(scale, flat)
    x = scaling.apply(flat, dtype)
    empty = x[:0]
    data = Prepared(x, y, one_hot(y, 3, dtype), empty, y[:0], x, y, 3, ("a", "b", "c"), (4, 5), scaling)
    result = fit(spec, data)
    blob = model_to_bytes(result.network, spec, scaling=scaling, sample_shape=(4, 5),
                          class_names=("a", "b", "c"), metrics={"accuracy": 1.0},
                          checksums={"train.npz": "0" * 64}, cache_key="k")
    return result.network, spec, scaling, blob


def trainer_logits(network, scaling: Scaling, x_raw: np.ndarray) -> np.ndarray:
    return network.predict(scaling.apply(x_raw.reshape(len(x_raw), -1), network.dtype))


def assert_close(found: np.ndarray, expected: np.ndarray, rtol: float = 1e-6) -> None:
    """Equal within `rtol` relative to the largest expected magnitude."""
    assert found.shape == expected.shape and found.dtype == expected.dtype
    assert np.max(np.abs(found - expected)) <= rtol * np.max(np.abs(expected))


@pytest.fixture(scope="module")
def every_layer():
    return trained()


STANDALONE = textwrap.dedent("""
    import importlib.abc, json, sys
    already = set(sys.modules)  # what site (.pth files) loaded before us

    class NothingButNumpyAndMsgpack(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in ("mlpspec", "attrs", "attr", "typer", "hypothesis", "onnx", "PIL", "pytest"):
                raise ImportError(f"{name} is blocked in this process")
            return None

    sys.meta_path.insert(0, NothingButNumpyAndMsgpack())
    try:
        import mlpspec
    except ImportError:
        pass
    else:
        raise SystemExit("importing mlpspec should fail here")

    import numpy as np
    sys.path.insert(0, sys.argv[1])  # -I keeps the script's folder off the path
    import infer

    assert infer.__file__.startswith(sys.argv[1]), infer.__file__
    model = infer.load(sys.argv[2])
    raw = np.load(sys.argv[3])
    np.save(sys.argv[4], model.logits(raw))
    np.save(sys.argv[5], np.stack([model.logits(sample) for sample in raw]))
    outside = sorted({m.partition(".")[0] for m in set(sys.modules) - already
                      if not m.startswith(("_cython", "cython_runtime"))}  # msgpack's runtime
                     - set(sys.stdlib_module_names) - {"infer"})
    print(json.dumps({"labels": model.predict(raw).tolist(), "modules": outside}))
""")


def test_standalone_copy_matches_the_trainer_without_mlpspec(tmp_path, every_layer):
    network, spec, scaling, blob = every_layer
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    shutil.copy(INFER_SOURCE, folder / "infer.py")
    (tmp_path / "model.mlpm").write_bytes(blob)
    x_raw, y = raw_blobs(1, 200)
    np.save(tmp_path / "raw.npy", x_raw)
    (tmp_path / "check.py").write_text(STANDALONE)
    done = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "check.py"), str(folder), str(tmp_path / "model.mlpm"),
         str(tmp_path / "raw.npy"), str(tmp_path / "batch.npy"), str(tmp_path / "one.npy")],
        capture_output=True, text=True, cwd=folder)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["modules"]) <= {"numpy", "msgpack"}, report["modules"]

    expected = trainer_logits(network, scaling, x_raw)
    assert_close(np.load(tmp_path / "batch.npy"), expected)
    assert_close(np.load(tmp_path / "one.npy"), expected)  # one sample at a time
    assert report["labels"] == expected.argmax(axis=1).tolist()
    assert np.mean(expected.argmax(axis=1) == y) > 0.9  # a trained model, not noise


def test_raw_and_preprocessed_inputs_agree(every_layer):
    network, spec, scaling, blob = every_layer
    model = infer.load(blob)
    x_raw, _ = raw_blobs(2, 50)
    features = scaling.apply(x_raw.reshape(50, -1), np.float32)
    np.testing.assert_array_equal(model.preprocess(x_raw), features)
    np.testing.assert_array_equal(model.logits(x_raw), model.logits(features))
    np.testing.assert_array_equal(model.logits(features), network.predict(features))
    np.testing.assert_array_equal(model.logits(x_raw.astype(np.float64), raw=True), model.logits(x_raw))


@pytest.mark.parametrize("scale", ["unit", "none"])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_scalings_and_precisions_match_the_trainer(scale, precision):
    network, spec, scaling, blob = trained(scale=scale, precision=precision, overrides=("train.epochs=1",))
    model = infer.load(blob)
    assert model.dtype == np.dtype(precision)
    x_raw, _ = raw_blobs(3, 40)
    expected = trainer_logits(network, scaling, x_raw)
    np.testing.assert_array_equal(model.logits(x_raw), expected)
    assert_close(model.logits(x_raw[:3]), expected[:3])  # the small-batch path


def test_shapes_of_one_sample_and_of_a_batch(every_layer):
    model = infer.load(every_layer[3])
    x_raw, _ = raw_blobs(4, 6)
    proba = model.predict_proba(x_raw)
    assert proba.shape == (6, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert model.predict(x_raw).shape == (6,) and model.predict(x_raw).dtype == np.int64
    assert isinstance(model.predict(x_raw[0]), int)
    assert model.predict_proba(x_raw[0]).shape == (3,) and model.logits(x_raw[0]).shape == (3,)
    features = model.preprocess(x_raw)
    assert model.predict(features[0]) == model.predict(x_raw[0])
    assert model.predict(x_raw[:0]).shape == (0,)


def test_inputs_are_never_modified(every_layer):
    model = infer.load(every_layer[3])
    features = model.preprocess(raw_blobs(5, 8)[0])
    kept = features.copy()
    for call in (model.logits, model.predict, model.predict_proba):
        call(features)
        call(features[0])
    np.testing.assert_array_equal(features, kept)


def test_wrong_inputs_say_what_fits(every_layer):
    model = infer.load(every_layer[3])
    expected = (r"expected raw uint8 samples of shape \(4, 5\) or \(n, 4, 5\), or preprocessed float "
                r"samples of shape \(20,\) or \(n, 20\); found ")
    with pytest.raises(infer.InputError, match=expected + r"uint8 of shape \(5, 4\)"):
        model.predict(np.zeros((5, 4), np.uint8))
    with pytest.raises(infer.InputError, match=expected + r"float32 of shape \(3, 4, 5\)"):
        model.predict(np.zeros((3, 4, 5), np.float32))
    with pytest.raises(infer.InputError, match=expected + r"int64 of shape \(20,\)"):
        model.predict(np.zeros(20, np.int64))
    with pytest.raises(infer.InputError, match="found <U1 of shape"):
        model.predict(np.array(["a"]), raw=True)
    for bad in (np.nan, np.inf):
        with pytest.raises(infer.InputError, match=r"expected finite numbers, found NaN or infinity "
                                                   r"in float32 input of shape \(2, 20\)"):
            model.predict(np.full((2, 20), bad, np.float32))


def test_mse_model_probabilities_are_the_raw_outputs():
    network, spec, scaling, blob = trained(overrides=('train.loss={ type = "mse.v1" }', "train.epochs=1"))
    model = infer.load(blob)
    assert model.output == "identity" and model.loss == "mse.v1"
    x_raw, _ = raw_blobs(6, 10)
    np.testing.assert_array_equal(model.predict_proba(x_raw), model.logits(x_raw))


def test_inspection_attributes(every_layer):
    network, spec, scaling, blob = every_layer
    model = infer.load(blob)
    trained_values = sum(array.size for _, array in network.parameters())
    assert model.parameter_count == trained_values == 20 * 24 + 24 + 2 * 24 + 24 * 16 + 16 + 16 * 16 + 16 \
        + 16 * 12 + 12 + 12 * 12 + 12 + 12 * 3 + 3
    assert model.format_version == infer.FORMAT_VERSION
    assert model.writer.startswith("mlpspec ")
    assert model.provenance["spec"].startswith("spec_version = 1")
    assert set(model.tensors) == set(network.state_dict())
    described = model.describe()
    assert json.loads(json.dumps(described)) == described
    assert "20 -> 3" in repr(model)
