"""The model file format (docs/model-format.md): exact bytes, versions, damage, hostility.

Every released format version keeps a file in tests/model_files/ that must
load forever with the outputs pinned here.
"""

from __future__ import annotations

import hashlib
import math
import tracemalloc
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpspec import infer
from mlpspec.data.prepare import RawInput, Scaling
from mlpspec.export import model_to_bytes, write_model
from mlpspec.spec import parse_spec
from mlpspec.train import build_network

from conftest import npz_spec, relu_mlp

MODEL_FILES = Path(__file__).parent / "model_files"
V1_0 = MODEL_FILES / "v1.0.mlpm"
V1_0_SHA256 = "128f7b5c93ff35e0d0fbe354a5b6b0001ed88874d68e3ba0f4496bcab1483af8"
PINNED_INPUTS = np.arange(2 * 16, dtype=np.uint8).reshape(2, 4, 4) * 7
PINNED_LOGITS = [[-0.18237854540348053, -1.3568964004516602, 1.08650803565979],
                 [-0.17972785234451294, -1.3429744243621826, 1.046987533569336]]
V1_1 = MODEL_FILES / "v1.1.mlpm"
V1_1_SHA256 = "3d12cb9754b44cc714a88358c6515e7652bfad8d3d4346118fc4d042e06ad0be"
V1_1_INPUTS = np.array([[12.5, 1.5, 95.0, 0.25, 500.0, -6.0],
                        [14.0, 4.0, 130.0, 0.5, 1200.0, -1.0]])
V1_1_LOGITS = [[-0.5872359871864319, 0.15030035376548767, 0.6569898724555969],
               [0.4776493012905121, -0.8774449229240417, -0.4426971673965454]]

V1_2 = MODEL_FILES / "v1.2.mlpm"
V1_2_SHA256 = "d0c3345e4b4d237f675ed04ccbe014ed075f35682e89c65e84ef765bc48eb805"
V1_2_INPUTS = np.array([[0.5, 40.0, 1.0, -2.0, 0.25],
                        [-1.25, 72.0, 1.75, 1.5, 0.75]])
V1_2_LOGITS = [[0.5706477761268616, -0.34099870920181274],
               [-0.10342514514923096, -4.290712833404541]]
V1_2_VALUES = [[196.47520264983177, -0.7713124193251133],
               [144.2345512509346, -1.0181695520877838]]

SMALL_SPEC = npz_spec("small", inputs=6) + relu_mlp(4) + """[train]
epochs = 1
"""


def small_model_bytes(spec_text: str = SMALL_SPEC, *, sample_shape=(2, 3), scaling=None,
                      classes=("a", "b", "c"), **kwargs) -> bytes:
    """A model file with seeded random weights (no training), for format tests."""
    spec = parse_spec(spec_text, "small.toml")
    features = int(np.prod(sample_shape))
    arguments = dict(scaling=scaling or Scaling("unit", np.array(0.0), np.array(255.0)),
                     raw_input=RawInput("uint8", True, np.zeros(features), np.full(features, 255.0)),
                     sample_shape=sample_shape, class_names=classes,
                     metrics={"accuracy": 0.5, "per_class": {"f1": [0.1, 0.2, np.float32(0.25)]}},
                     checksums={"train.npz": "1" * 64}, cache_key="c0ffee")
    arguments.update(kwargs)
    return model_to_bytes(build_network(spec), spec, **arguments)


def document(data: bytes) -> dict:
    """The parsed map of a model file, checksum entry dropped."""
    parsed = msgpack.unpackb(data, raw=False)
    parsed.pop("checksum")
    return parsed


def reencode(doc: dict) -> bytes:
    """`doc` as a model file with a valid checksum (so the field checks are reached)."""
    return infer.encode(doc)


def format_error(data: bytes, match: str | None = None) -> infer.ModelFormatError:
    with pytest.raises(infer.ModelFormatError, match=match) as caught:
        infer.load(data)
    return caught.value


# ---------------------------------------------------------------- released versions


def test_v1_0_file_is_unchanged():
    assert hashlib.sha256(V1_0.read_bytes()).hexdigest() == V1_0_SHA256


def test_v1_0_file_loads_with_pinned_outputs():
    model = infer.load(V1_0)
    assert model.format_version == (1, 0)
    assert model.classes == ("circle", "square", "triangle")
    assert model.sample_shape == (4, 4) and model.inputs == 16
    assert [layer["type"] for layer in model.layers] == [
        "dense.v1", "batchnorm.v1", "relu.v1", "dense.v1", "leaky_relu.v1", "dropout.v1", "dense.v1",
        "gelu.v1", "dense.v1", "sigmoid.v1", "dense.v1", "tanh.v1", "dense.v1"]
    assert model.metrics["confusion_matrix"] == [[3, 0, 0], [1, 2, 0], [0, 0, 2]]
    assert model.provenance["cache_key"] == "ab" * 32
    np.testing.assert_allclose(model.logits(PINNED_INPUTS), PINNED_LOGITS, rtol=1e-6)
    assert model.predict(PINNED_INPUTS).tolist() == [2, 2]


def test_v1_0_file_reencodes_to_the_same_bytes():
    data = V1_0.read_bytes()
    assert infer.load(data).to_bytes() == data


def test_v1_0_file_means_what_it_meant():
    """No input contract: predict takes raw samples, scales them, and checks shape, dtype kind, NaN."""
    model = infer.load(V1_0)
    assert model.input_contract is None and model.describe()["input"] is None
    np.testing.assert_array_equal(model.logits(PINNED_INPUTS.astype(np.float64)), model.logits(PINNED_INPUTS))
    np.testing.assert_array_equal(model.logits_prepared(PINNED_INPUTS.reshape(2, 16) / np.float32(255)),
                                  model.logits(PINNED_INPUTS))
    with pytest.raises(infer.InputError, match="expected finite numbers"):
        model.predict(np.full((4, 4), np.nan))
    with pytest.raises(infer.InputError, match=r"expected raw samples of shape \(4, 4\)"):
        model.predict(PINNED_INPUTS.reshape(2, 16))


def test_v1_1_file_is_unchanged():
    assert hashlib.sha256(V1_1.read_bytes()).hexdigest() == V1_1_SHA256


def test_v1_1_file_loads_with_pinned_outputs_and_contract():
    model = infer.load(V1_1)
    assert model.format_version == (1, 1)
    assert model.classes == ("class_0", "class_1", "class_2")
    assert model.sample_shape == (6,) and model.scaling["kind"] == "standardize"
    contract = model.input_contract
    assert contract["dtype"] == "float64" and contract["whole"] is False
    assert contract["min"].tolist() == [11.0, 0.75, 70.0, 0.125, 278.0, -10.0]
    assert contract["max"].tolist() == [14.75, 5.75, 162.0, 0.625, 1680.0, 0.5]
    np.testing.assert_allclose(model.logits(V1_1_INPUTS), V1_1_LOGITS, rtol=1e-6)
    assert model.predict(V1_1_INPUTS).tolist() == [2, 0]
    features = model.preprocess(V1_1_INPUTS)
    np.testing.assert_array_equal(model.logits_prepared(features), model.logits(V1_1_INPUTS))
    # The rows already standardized, given to predict: refused, naming the first one found.
    with pytest.raises(infer.InputError, match=r"^sample 0, feature 0: -0\.625 is far outside the values "
                                               r"this feature had in training \(11 to 14\.75; accepted: "):
        model.predict(features)
    with pytest.raises(infer.InputError, match=r"^sample 0, feature 0: 12\.5 is far outside the prepared "
                                               r"values this feature had in training"):
        model.predict_prepared(V1_1_INPUTS)


def test_v1_1_file_reencodes_to_the_same_bytes():
    data = V1_1.read_bytes()
    assert infer.load(data).to_bytes() == data


def test_v1_2_file_is_unchanged():
    assert hashlib.sha256(V1_2.read_bytes()).hexdigest() == V1_2_SHA256


def test_v1_2_regression_file_loads_with_pinned_values():
    model = infer.load(V1_2)
    assert model.format_version == (1, 2)
    assert model.task == "regression" and model.classes == ()
    assert model.target_names == ("progression", "ratio")
    assert model.target_scaling["kind"] == "standardize"
    assert model.target_scaling["offset"].tolist() == [152.25, -0.75]
    assert model.target_scaling["scale"].tolist() == [77.5, 0.0625]
    assert model.output == "identity" and model.loss == "huber.v1"
    np.testing.assert_allclose(model.logits(V1_2_INPUTS), V1_2_LOGITS, rtol=1e-6)
    np.testing.assert_allclose(model.predict(V1_2_INPUTS), V1_2_VALUES, rtol=1e-6)
    # The values are the logits de-standardised, in float64, exactly.
    logits = model.logits(V1_2_INPUTS).astype(np.float64)
    np.testing.assert_array_equal(model.predict(V1_2_INPUTS), logits * [77.5, 0.0625] + [152.25, -0.75])
    np.testing.assert_array_equal(model.predict(V1_2_INPUTS[1]), model.predict(V1_2_INPUTS)[1])
    with pytest.raises(TypeError, match=r"predict_proba: this is a regression model \(2 targets: "
                                        r"progression, ratio\); it has no class probabilities"):
        model.predict_proba(V1_2_INPUTS)
    described = model.describe()
    assert described["task"] == "regression"
    assert described["targets"] == {"names": ["progression", "ratio"], "scaling": "standardize",
                                    "offset": [152.25, -0.75], "scale": [77.5, 0.0625]}


def test_v1_2_file_reencodes_to_the_same_bytes():
    data = V1_2.read_bytes()
    assert infer.load(data).to_bytes() == data


def test_older_files_are_classification():
    for path in (V1_0, V1_1):
        model = infer.load(path)
        assert model.task == "classification" and model.target_names == ()
        assert model.describe()["task"] == "classification" and model.describe()["targets"] is None


def test_regression_fields_are_checked():
    doc = document(V1_2.read_bytes())
    for change, match in [
        (lambda d: d.update(task="ranking"), r"^task: expected 'classification' or 'regression'"),
        (lambda d: d.pop("targets"), r"^targets: missing"),
        (lambda d: d.update(classes=["a", "b"]), r"^classes: unexpected in a regression model"),
        (lambda d: d["targets"].update(names=["one"]), r"^targets\.names: expected 2 names"),
        (lambda d: d["targets"]["scaling"].update(kind="unit"),
         r"^targets\.scaling\.kind: expected 'standardize' or 'none'"),
        (lambda d: d["targets"]["scaling"].update(scale=infer.tensor_entry(np.zeros(2))),
         r"^targets\.scaling\.scale\.data: expected non-zero values"),
        (lambda d: d["architecture"].update(output="softmax"),
         r"^architecture\.output: expected 'identity' for a regression model"),
        (lambda d: d.pop("task"), r"^targets: unexpected in a classification model"),
    ]:
        changed = document(V1_2.read_bytes())
        change(changed)
        format_error(reencode(changed), match)
    classification = document(V1_1.read_bytes())
    classification["targets"] = doc["targets"]
    format_error(reencode(classification), r"^targets: unexpected in a classification model")


# ---------------------------------------------------------------- writing


def test_same_inputs_give_the_same_bytes():
    assert small_model_bytes() == small_model_bytes()
    assert small_model_bytes(created="2024-01-01T00:00:00Z") != small_model_bytes()


def test_save_load_save_is_byte_identical(tmp_path):
    data = small_model_bytes()
    path = write_model(tmp_path / "sub" / "model.mlpm", data)
    assert path.read_bytes() == data
    assert infer.load(path).to_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == ["model.mlpm"]  # no temporary left


def test_encode_exact_bytes():
    data = infer.encode({"format": "mlpspec-model", "format_version": [1, 0],
                         "t": infer.tensor_entry(np.array([1.0, -2.0], dtype=np.float32))})
    body = (b"\x84" + b"\xa6format\xadmlpspec-model" + b"\xaeformat_version\x92\x01\x00"
            + b"\xa1t\x83\xa5dtype\xa7float32\xa5shape\x91\x02\xa4data\xc4\x08"
            + b"\x00\x00\x80\x3f\x00\x00\x00\xc0")
    assert data == body + b"\xa8checksum\xae" + f"crc32:{zlib.crc32(body):08x}".encode()


def test_document_layout():
    doc = document(small_model_bytes())
    assert list(doc) == ["format", "format_version", "writer", "architecture", "tensors",
                         "preprocessing", "classes", "metrics", "provenance"]
    assert doc["architecture"]["layers"][0] == {"type": "dense.v1",
                                                "settings": {"units": 4, "init": "he_normal", "std": 0.01}}
    assert doc["architecture"]["output"] == "softmax"
    assert doc["tensors"]["layers.0.W"]["shape"] == [6, 4]
    assert doc["metrics"]["per_class"]["f1"] == [0.1, 0.2, 0.25]
    assert doc["provenance"]["spec"].startswith("spec_version = 1")


def test_writer_refuses_inconsistent_pieces():
    with pytest.raises(ValueError, match="2 class names for 3 network outputs"):
        small_model_bytes(classes=("a", "b"))
    with pytest.raises(ValueError, match="inputs disagree"):
        small_model_bytes(sample_shape=(28, 28))
    with pytest.raises(TypeError, match=r"metrics\.when: cannot store a object"):
        small_model_bytes(metrics={"when": object()})


# ---------------------------------------------------------------- versions


def test_newer_major_is_rejected_naming_both_versions():
    doc = document(small_model_bytes())
    doc["format_version"] = [2, 3]
    doc["architecture"] = "something a 1.x reader cannot know"
    error = format_error(reencode(doc))
    assert str(error) == ("format_version: the file has format version 2.3, newer than this "
                          "reader's 1.2; read it with a newer mlpspec (or its infer.py)")


def test_newer_minor_with_unknown_fields_loads():
    data = small_model_bytes()
    doc = document(data)
    doc["format_version"] = [1, 7]
    doc["signature"] = {"by": "someone", "bytes": b"\x00" * 8}
    doc["architecture"]["layers"][0]["settings"]["sparsity"] = 0.5
    doc["architecture"]["layers"][1]["note"] = "extra"
    doc["tensors"]["layers.0.W"]["quantization"] = None
    doc["tensors"]["layers.0.mask"] = infer.tensor_entry(np.ones((6, 4), np.float32))
    doc["preprocessing"]["resize"] = [2, 3]
    model = infer.load(reencode(doc))
    assert model.format_version == (1, 7)
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(model.logits(x), infer.load(data).logits(x))
    for minor in (2**32, 2**40, 2**64 - 1):  # any minor: the format promises every 1.x is read
        doc["format_version"] = [1, minor]
        assert infer.load(reencode(doc)).format_version == (1, minor)


def test_not_a_model_file():
    format_error(b"", "the file is empty")
    format_error(b"PK\x03\x04", "not an mlpspec model file: expected a msgpack map, found first byte 0x50")
    format_error(msgpack.packb({"format": "safetensors"}), "format: not an mlpspec model file")
    format_error(msgpack.packb({"format": "mlpspec-model", "format_version": "1.0"}),
                 r"format_version: expected \[major, minor\]")


def test_checksum_catches_a_flipped_bit_in_the_weights():
    data = bytearray(small_model_bytes())
    data[data.index(b"layers.0.W") + 60] ^= 0x04
    format_error(bytes(data), r"checksum: mismatch: the file is corrupted \(stored crc32:[0-9a-f]{8}, "
                              r"computed crc32:[0-9a-f]{8}\)")


def test_checksum_must_be_last():
    doc = document(small_model_bytes())
    packed = msgpack.packb({"checksum": "crc32:00000000", **doc})
    format_error(packed, "checksum: must be the last entry")


# ---------------------------------------------------------------- field errors


def mutated(change) -> bytes:
    doc = document(small_model_bytes())
    change(doc)
    return reencode(doc)


def nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


FIELD_ERRORS = [
    (lambda d: d["tensors"]["layers.0.W"].update(shape=[6, 5]),
     r'tensors\["layers.0.W"\].shape: expected \[6, 4\], found \[6, 5\]'),
    (lambda d: d["tensors"]["layers.0.W"].update(shape=[6, 4, 1]),
     r'tensors\["layers.0.W"\].shape: expected \[6, 4\], found \[6, 4, 1\]'),
    (lambda d: d["tensors"]["layers.0.W"].update(data=b"\x00" * 95),
     r'tensors\["layers.0.W"\].data: expected 96 bytes for float32 \[6, 4\], found 95'),
    (lambda d: d["tensors"]["layers.0.W"].update(dtype="int8"),
     r'tensors\["layers.0.W"\].dtype: expected one of float32, float64, found a string \'int8\''),
    (lambda d: d["tensors"]["layers.2.b"].update(dtype="float64", data=b"\x00" * 24),
     r'tensors\["layers.2.b"\].dtype: expected float32 \(the architecture\'s dtype\), found float64'),
    (lambda d: d["tensors"].pop("layers.2.b"),
     r'tensors\["layers.2.b"\]: missing \(dense.v1 layer 2 needs W, b\)'),
    (lambda d: d["tensors"]["layers.0.b"].pop("shape"), r'tensors\["layers.0.b"\].shape: missing'),
    (lambda d: d["architecture"]["layers"][1].update(type="swish.v1"),
     r"architecture.layers\[1\].type: unknown layer type a string 'swish.v1'; this reader knows"),
    (lambda d: d["architecture"]["layers"][0]["settings"].update(units="4"),
     r"architecture.layers\[0\].settings.units: expected an integer, found a string '4'"),
    (lambda d: d["architecture"]["layers"][0]["settings"].update(units=True),
     r"architecture.layers\[0\].settings.units: expected an integer, found a boolean True"),
    (lambda d: d["architecture"].update(inputs=7),
     r"architecture.inputs: expected 6 \(the product of preprocessing.sample_shape \[2, 3\]\), found 7"),
    (lambda d: d["architecture"].update(layers=[]), r"architecture.layers: expected 1 to 10000 layers"),
    (lambda d: d["architecture"].update(output="sparsemax"), r"architecture.output: expected 'softmax'"),
    (lambda d: d.pop("architecture"), r"^architecture: missing$"),
    (lambda d: d.update(classes=["a", "b"]), r"classes: expected 3 names \(the network's outputs\), found 2"),
    (lambda d: d.update(classes=["a", "b", 3]), r"classes\[2\]: expected a string, found an integer 3"),
    (lambda d: d["preprocessing"]["scaling"].update(kind="maxmin"),
     r"preprocessing.scaling.kind: expected one of 'unit', 'standardize', 'minmax', 'none', "
     r"found a string 'maxmin'"),
    (lambda d: d["preprocessing"]["scaling"].update(scale=infer.tensor_entry(np.zeros(()))),
     r"preprocessing.scaling.scale.data: expected non-zero values, found 0"),
    (lambda d: d["preprocessing"]["scaling"].update(offset=infer.tensor_entry(np.zeros(5))),
     r"preprocessing.scaling.offset.shape: expected \[\] or \[6\]"),
    (lambda d: d["preprocessing"].update(sample_shape=[2, -3]),
     r"preprocessing.sample_shape: expected 1 to 4 positive integers, found a list \[2, -3\]"),
    (lambda d: d.update(metrics=[1, 2]), r"^metrics: expected a map, found a list"),
    (lambda d: d["preprocessing"].pop("input"),
     r"^preprocessing.input: missing \(files of format 1.1 and later record the raw inputs"),
    (lambda d: d["preprocessing"].update(input=[0, 255]),
     r"^preprocessing.input: expected a map, found a list"),
    (lambda d: d["preprocessing"]["input"].update(dtype="complex64"),
     r"^preprocessing.input.dtype: expected one of bool, uint8, .*, float64, found a string 'complex64'"),
    (lambda d: d["preprocessing"]["input"].pop("whole"), r"^preprocessing.input.whole: missing$"),
    (lambda d: d["preprocessing"]["input"].update(whole=1),
     r"^preprocessing.input.whole: expected a boolean, found an integer 1$"),
    (lambda d: d["preprocessing"]["input"].update(whole=False),
     r"^preprocessing.input.whole: expected true \(uint8 values are whole numbers\), found false$"),
    (lambda d: d["preprocessing"]["input"].update(min=infer.tensor_entry(np.zeros(5))),
     r"^preprocessing.input.min.shape: expected \[6\], found \[5\]"),
    (lambda d: d["preprocessing"]["input"].update(max=infer.tensor_entry(np.full(6, np.nan))),
     r"^preprocessing.input.max.data: expected finite values, found NaN or inf"),
    (lambda d: d["preprocessing"]["input"].update(max=infer.tensor_entry(np.full(6, -1.0))),
     r"^preprocessing.input.min.data: expected min <= max for every feature, found 0.0 > -1.0 for feature 0"),
    (lambda d: d.update(metrics={"deep": nested(34)}),
     r"metrics.deep(\[0\]){31}: nested more than 32 levels deep"),
]


@pytest.mark.parametrize("change, message", FIELD_ERRORS)
def test_errors_name_the_field(change, message):
    format_error(mutated(change), message)


def test_duplicate_keys_and_extension_types_are_refused():
    body = msgpack.packb({"format": "mlpspec-model"})[1:]
    format_error(b"\x82" + body + body, "the key 'format' appears twice in one map")
    format_error(b"\x81\xa1x" + msgpack.packb(msgpack.ExtType(5, b"abcd")), "extension types are not allowed")
    format_error(b"\x81\xa1x\xd6\xff\x00\x00\x00\x01", "unsupported msgpack value Timestamp")
    format_error(b"\x81\x01\x02", "not a valid msgpack document: int is not allowed for map key")


# ---------------------------------------------------------------- hostile files


def quickly_and_small(data: bytes, match: str) -> None:
    """Refused with ModelFormatError within 5 MB of allocations (nothing sized from the claim)."""
    tracemalloc.start()
    try:
        format_error(data, match)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000 + 2 * len(data)


def test_tensor_claiming_1e12_elements():
    def huge(doc):
        doc["architecture"]["layers"][0]["settings"]["units"] = 10**6
        doc["tensors"]["layers.0.W"]["shape"] = [10**6, 10**6]
    quickly_and_small(mutated(huge), r"layers.0.W\"\].shape: expected \[6, 1000000\], found \[1000000, 1000000\]")

    def huge_scaling(doc):
        doc["preprocessing"]["scaling"]["offset"] = {"dtype": "float64", "shape": [10**6] * 4, "data": b""}
    quickly_and_small(mutated(huge_scaling), r"offset.shape: \[1000000, 1000000, 1000000, 1000000\] has "
                                             r"1000000000000000000000000 elements, more than the limit")


def test_headers_claiming_huge_lengths():
    quickly_and_small(b"\x81\xa4data\xc6\xff\xff\xff\xff" + b"\x00" * 100, "not a valid msgpack document")
    quickly_and_small(b"\x81\xa4text\xdb\xff\xff\xff\xff" + b"a" * 100, "not a valid msgpack document")
    quickly_and_small(b"\x81\xa4list\xdd\xff\xff\xff\xff" + b"\xc0" * 100, "not a valid msgpack document")
    quickly_and_small(b"\xdf\xff\xff\xff\xff" + b"\xa1a\xc0" * 100, "not a valid msgpack document")


def test_deep_nesting():
    quickly_and_small(b"\x81\xa1a" + b"\x91" * 100_000 + b"\xc0", "nested too deeply")
    quickly_and_small(b"\x81\xa1a" + b"\x81\xa1a" * 500 + b"\xc0", "nested more than 32 levels deep")


def test_huge_strings_within_the_file():
    doc = document(small_model_bytes())
    doc["writer"] = "w" * (infer.MAX_STR_LEN + 1)
    format_error(reencode(doc), "not a valid msgpack document")


def test_file_size_limit(tmp_path):
    path = tmp_path / "model.mlpm"
    path.write_bytes(V1_0.read_bytes())
    format_error_from = pytest.raises(infer.ModelFormatError, match=r"the file is 4580 bytes, more than "
                                                                    r"the limit of 1000")
    with format_error_from:
        infer.load(path, max_bytes=1000)
    with pytest.raises(infer.ModelFormatError, match="more than the limit of 1000"):
        infer.load(path.read_bytes(), max_bytes=1000)


# ---------------------------------------------------------------- fuzz


def test_every_truncation_is_a_clean_error(tmp_path):
    data = V1_0.read_bytes()
    path = tmp_path / "cut.mlpm"
    for length in range(len(data)):
        with pytest.raises(infer.ModelFormatError):
            infer.load(data[:length])
    for length in (0, 1, 100, len(data) - 1):  # the file path too (mapped, not read)
        path.write_bytes(data[:length])
        with pytest.raises(infer.ModelFormatError):
            infer.load(path)


def test_random_byte_damage_is_a_clean_error():
    data = V1_0.read_bytes()
    rng = np.random.default_rng(20240501)
    cases = 4000
    for case in range(cases):
        damaged = bytearray(data)
        how = case % 5
        at = int(rng.integers(0, len(data)))
        if how == 0:  # flip one bit
            damaged[at] ^= 1 << int(rng.integers(0, 8))
        elif how == 1:  # overwrite a few bytes with random ones
            damaged[at:at + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        elif how == 2:  # insert bytes
            damaged[at:at] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        elif how == 3:  # delete bytes
            del damaged[at:at + int(rng.integers(1, 9))]
        else:  # a length or count byte set to its maximum
            damaged[at] = 0xFF
        with pytest.raises(infer.ModelFormatError):
            infer.load(bytes(damaged))


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=64)
    | st.sampled_from(["float32", "float64", "dense.v1", "relu.v1", "batchnorm.v1", "unit", "none"])
    | st.lists(st.integers(-2, 2**31 + 1), max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def paths_of(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_of(item, (*prefix, index))


BASE_DOCUMENTS = {"1.0": document(V1_0.read_bytes()), "1.1": document(V1_1.read_bytes())}
BASE_PATHS = [(version, p) for version, doc in BASE_DOCUMENTS.items() for p in paths_of(doc) if p]
BASE_INPUTS = {"1.0": PINNED_INPUTS, "1.1": V1_1_INPUTS}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(BASE_PATHS), value=msgpack_values, delete=st.booleans())
def test_structured_damage_is_a_clean_error_or_a_working_model(place, value, delete):
    """Any field replaced (or removed) with a valid checksum: refused cleanly, or a working model."""
    version, where = place
    doc = msgpack.unpackb(msgpack.packb(BASE_DOCUMENTS[version]), raw=False)
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    if delete:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    try:
        model = infer.load(reencode(doc))
    except infer.ModelFormatError:
        return
    with np.errstate(all="ignore"):
        try:
            outputs = model.predict_proba(BASE_INPUTS[version])
        except infer.InputError:  # sample_shape or the contract changed: these inputs no longer fit
            return
    assert outputs.shape == (2, len(model.classes))
    assert math.prod(model.sample_shape) == model.inputs
