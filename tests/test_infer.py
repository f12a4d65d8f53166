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
from mlpspec.data.prepare import Prepared, RawInput, Scaling, fit_scaling, one_hot
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
    blob = model_to_bytes(result.network, spec, scaling=scaling, raw_input=RawInput.of(flat),
                          sample_shape=(4, 5),
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


def test_raw_and_prepared_inputs_agree(every_layer):
    network, spec, scaling, blob = every_layer
    model = infer.load(blob)
    x_raw, _ = raw_blobs(2, 50)
    features = scaling.apply(x_raw.reshape(50, -1), np.float32)
    np.testing.assert_array_equal(model.preprocess(x_raw), features)
    np.testing.assert_array_equal(model.logits(x_raw), model.logits_prepared(features))
    np.testing.assert_array_equal(model.logits_prepared(features), network.predict(features))
    # Raw samples in any numeric dtype are raw: the same pixels as float64 or int64.
    for dtype in (np.float64, np.float32, np.int64, np.uint16):
        np.testing.assert_array_equal(model.logits(x_raw.astype(dtype)), model.logits(x_raw))
    np.testing.assert_array_equal(model.predict_proba_prepared(features), model.predict_proba(x_raw))
    np.testing.assert_array_equal(model.predict_prepared(features), model.predict(x_raw))


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
    assert model.predict_prepared(features[0]) == model.predict(x_raw[0])
    assert model.predict_proba_prepared(features[0]).shape == (3,)
    assert model.predict(x_raw[:0]).shape == (0,) and model.predict_prepared(features[:0]).shape == (0,)


def test_inputs_are_never_modified(every_layer):
    model = infer.load(every_layer[3])
    x_raw = raw_blobs(5, 8)[0]
    features = model.preprocess(x_raw)
    kept, kept_raw = features.copy(), x_raw.copy()
    for call in (model.logits_prepared, model.predict_prepared, model.predict_proba_prepared):
        call(features)
        call(features[0])
    for call in (model.logits, model.predict, model.predict_proba):
        call(x_raw)
        call(x_raw[0])
        call(x_raw.astype(np.float32))
    np.testing.assert_array_equal(features, kept)
    np.testing.assert_array_equal(x_raw, kept_raw)


def test_wrong_inputs_say_what_fits(every_layer):
    model = infer.load(every_layer[3])
    raw = r"expected raw samples of shape \(4, 5\) or \(n, 4, 5\); found "
    prepared = r"expected prepared features of shape \(20,\) or \(n, 20\); found "
    with pytest.raises(infer.InputError, match=raw + r"uint8 of shape \(5, 4\)$"):
        model.predict(np.zeros((5, 4), np.uint8))
    with pytest.raises(infer.InputError, match=raw + r"int64 of shape \(3, 20\); prepared features of "
                                               r"shape \(n, 20\) go to predict_prepared\(\)$"):
        model.predict(np.zeros((3, 20), np.int64))
    with pytest.raises(infer.InputError, match=prepared + r"float32 of shape \(3, 4, 5\); raw samples "
                                               r"go to predict\(\), predict_proba\(\) or logits\(\)$"):
        model.predict_prepared(np.zeros((3, 4, 5), np.float32))
    with pytest.raises(infer.InputError, match=r"expected real numbers, found an array of <U1 of shape"):
        model.predict(np.array(["a"]))
    with pytest.raises(infer.InputError, match=r"expected real numbers, found an array of complex128"):
        model.predict(np.zeros((4, 5), complex))
    with pytest.raises(infer.InputError, match=r"expected real numbers, found an array of object"):
        model.predict_proba([[1, None, 3, 4, 5]] * 4)
    with pytest.raises(infer.InputError, match=r"expected an array of numbers"):
        model.logits([[1, 2], [3]])
    for bad in (np.nan, np.inf):
        with pytest.raises(infer.InputError, match=r"expected finite numbers, found NaN or infinity "
                                                   r"in float32 input of shape \(2, 4, 5\)"):
            model.predict(np.full((2, 4, 5), bad, np.float32))
        with pytest.raises(infer.InputError, match=r"expected finite numbers, found NaN or infinity "
                                                   r"in float64 input of shape \(20,\)"):
            model.predict_prepared(np.full(20, bad))
    for call in (model.predict, model.predict_proba, model.logits, model.preprocess):
        with pytest.raises(TypeError):  # the old flag is gone: never silently ignored
            call(np.zeros((4, 5), np.uint8), raw=True)


def test_the_contract_refuses_what_the_model_was_not_trained_on(every_layer):
    """Trained on uint8 pixels: scaled pixels, values beyond uint8 and raw-as-prepared are refused."""
    model = infer.load(every_layer[3])
    assert model.input_contract["dtype"] == "uint8"
    x_raw, _ = raw_blobs(9, 6)
    with pytest.raises(infer.InputError, match=(
            r"^sample 0, value at \(0, 0\): 0\.\d+ is not a whole number, but the model was trained on "
            r"raw uint8 values \(\d+ to 255\); these look already scaled\. Pass raw samples as the "
            r"data source gives them, or prepared features to predict_prepared\(\) "
            r"\(11\d of 120 values are refused\)$")):
        model.predict(x_raw / 255.0)
    with pytest.raises(infer.InputError, match=r"^value at \(1, 2\): -3 is outside the range of uint8 "
                                               r"\(0 to 255\), the raw values the model was trained on$"):
        sample = x_raw[0].astype(np.int16)
        sample[1, 2] = -3
        model.predict(sample)
    with pytest.raises(infer.InputError, match=r"^sample 5, value at \(3, 4\): 256 is outside the range"):
        batch = x_raw.astype(np.float32)
        batch[5, 3, 4] = 256
        model.predict_proba(batch)
    with pytest.raises(infer.InputError, match=r"these look like raw samples"):
        model.predict_prepared(x_raw.reshape(6, 20).astype(np.float32))
    # Whole numbers within uint8 in another dtype are the same raw pixels.
    np.testing.assert_array_equal(model.predict(x_raw.astype(np.float16)), model.predict(x_raw))
    features = model.preprocess(x_raw)
    for dtype in (np.float16, np.float64):  # prepared features in other float dtypes pass the checks
        assert model.predict_prepared(features.astype(dtype)).shape == (6,)
        assert isinstance(model.predict_prepared(features[0].astype(dtype)), int)


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


def test_softmax_of_one_sample_is_the_batch_softmax(every_layer):
    """The one-row softmax (whole-array reductions) gives the batch softmax's bits, row for row."""
    model = infer.load(every_layer[3])
    x_raw, _ = raw_blobs(4, 6)
    logits = model.logits(x_raw)
    batch = infer._softmax(logits.copy())
    for i in range(len(logits)):
        np.testing.assert_array_equal(infer._softmax(logits[i:i + 1].copy())[0], batch[i])
    np.testing.assert_array_equal(model.predict_proba(x_raw[0]), infer._softmax(model.logits(x_raw[:1]))[0])
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=1e-6)


def test_kept_buffers_never_reach_the_caller(every_layer):
    """Hidden dense layers of the batch path write into per-thread buffers kept between calls:
    an answer must stay as it was after later calls, and threads must not share a buffer."""
    import threading

    model = infer.load(every_layer[3])
    assert sum(layer["type"] == "dense.v1" for layer in model.layers) >= 2  # a kept buffer is used
    batches = [raw_blobs(seed, 40)[0] for seed in (5, 6, 7, 8)]
    expected = [model.logits(x).copy() for x in batches]
    first = model.logits(batches[0])
    model.logits(batches[1])
    model.predict_proba(batches[2][:30])  # a shorter batch: a view of the same buffer
    np.testing.assert_array_equal(first, expected[0])

    found: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        found[i] = [model.logits(batches[(i + k) % 4]) for k in range(200)]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, also between the layers of one call
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    for i, answers in found.items():
        for k, answer in enumerate(answers):
            np.testing.assert_array_equal(answer, expected[(i + k) % 4])
