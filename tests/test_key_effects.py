"""Every spec key does what `docs/spec.md` says, shown through the path a user takes.

The list of keys is read from the schema (`mlpspec.spec.schema.describe`, the
generator of `docs/spec.md`), tagged choices included: each layer type, loss,
optimizer, schedule and data source is a key of its own (`train.optimizer.type
= adam.v1`), and a choice's settings are named with it
(`train.optimizer.beta1 (adam.v1)`). Each test registers the keys whose
documented effect it shows with `@effect(...)`; `test_every_key_has_an_effect_test`
fails for a key without one, so a new key cannot be added untested.

Tests go through `mlpspec.train.fit`, the `Pipeline` or the CLI, on tiny
synthetic data, in float64 where a result is compared with a step worked by
hand. Two tricks keep them exact:

* `recovered_inputs`: one full-batch SGD step of a single dense layer with
  (nearly) zero initial weights, MSE loss, one sample per class and learning
  rate n gives `W[:, c] = x_c`, the c-th training input *as the training step
  saw it*, so augmentation and dropout can be read back from the weights;
* ramps: an image whose pixel value is its column (or row) index is mapped by
  bilinear interpolation to its own source coordinate, so a warped ramp shows
  the shift, rotation, zoom or elastic displacement exactly.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpspec.cache import Cache
from mlpspec.cli import app
from mlpspec.data.idx import encode_idx
from mlpspec.data.prepare import Prepared, Scaling, one_hot
from mlpspec.errors import MlpspecError
from mlpspec.nn.layers import Network
from mlpspec.pipeline import Pipeline
from mlpspec.progress import Progress
from mlpspec.spec import parse_spec
from mlpspec.spec.model import Spec
from mlpspec.spec.schema import describe
from mlpspec.train import build_network, fit

from conftest import mnist_mirror, npz_spec

# ------------------------------------------------------------ the registry

_VARIANT = re.compile(r'^(?P<base>.*) \((?P<key>\w+) = "(?P<name>[^"]+)"\)$')


def schema_keys() -> set[str]:
    """Every key of the spec language, as named in this file's registry.

    A plain key is its path (`train.epochs`); a key of a tagged choice carries
    the choice (`network.layers[].alpha (leaky_relu.v1)`); each choice itself
    is `<tag path> = <name>` (`data.source = csv`), standing for the tag key.
    """
    sections = describe(Spec)
    keys: set[str] = set()
    tag_paths: set[str] = set()
    for section in sections:
        variant = _VARIANT.match(section.title)
        if variant is None:
            continue
        base, key, name = variant["base"], variant["key"], variant["name"]
        tag = f"{base}.{key}" if base else key
        tag_paths.add(tag)
        keys.add(f"{tag} = {name}")
        keys.update(f"{row.path} ({name})" for row in section.rows)
    for section in sections:
        if _VARIANT.match(section.title) is None:
            keys.update(row.path for row in section.rows if row.path not in tag_paths)
    return keys


EFFECTS: dict[str, list[str]] = {}


def effect(*keys: str) -> Callable:
    """Register the decorated test as showing the documented effect of `keys`."""
    def register(test: Callable) -> Callable:
        for key in keys:
            EFFECTS.setdefault(key, []).append(test.__name__)
        return test
    return register


def test_every_key_has_an_effect_test():
    keys = schema_keys()
    assert len(keys) > 80  # the walk found the tagged choices too
    assert "train.optimizer.beta2 (adamw.v1)" in keys and "data.source = csv" in keys
    missing = sorted(keys - EFFECTS.keys())
    assert not missing, f"spec keys without an effect test: {missing}"
    unknown = sorted(EFFECTS.keys() - keys)
    assert not unknown, f"effect tests registered for keys the schema lacks: {unknown}"


# ------------------------------------------------------------ building blocks


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def make_spec(layers: list[dict], *overrides: str, inputs: int, classes: int = 3,
              seed: int = 0, data: str = "", name: str = "effects") -> Spec:
    """A spec on local npz data with these layers; `overrides` as with `--set`."""
    text = npz_spec(name, inputs=inputs, seed=seed, data=data)
    for layer in layers:
        text += "[[network.layers]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in layer.items())
    text += "[train]\nepochs = 1\n"
    return parse_spec(text, f"{name}.toml", (f"data.classes={classes}", *overrides))


def dense(units: int, **keys) -> dict:
    return {"type": "dense.v1", "units": units, **keys}


def prepared(x: np.ndarray, y: np.ndarray, classes: int, *, x_val=None, y_val=None,
             sample_shape=None, targets=None) -> Prepared:
    """Network-ready data as the preprocess stage would hand it to `fit`."""
    x_val = x[:0] if x_val is None else x_val
    y_val = y[:0] if y_val is None else y_val
    targets = one_hot(y, classes, x.dtype) if targets is None else targets
    return Prepared(x, y, targets, x_val, y_val, x_val, y_val, classes,
                    tuple(str(c) for c in range(classes)), sample_shape or (x.shape[1],),
                    Scaling("none", np.array(0.0), np.array(1.0)))


def table(n: int = 12, features: int = 5, classes: int = 3, seed: int = 0) -> Prepared:
    """Random float64 features `(n, features)`, labels cycling through the classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, features))
    y = np.arange(n) % classes
    x_val = rng.normal(0.0, 1.0, (6, features))
    return prepared(x, y, classes, x_val=x_val, y_val=np.arange(6) % classes)


def linear(*overrides: str, inputs: int = 5, classes: int = 3, loss: str = "mse.v1",
           std: float = 0.5) -> Spec:
    """One dense layer, float64, plain SGD at 0.1 unless overridden."""
    return make_spec([dense(classes, init="normal", std=std)], 'train.precision="float64"',
                     f'train.loss={{type="{loss}"}}',
                     'train.optimizer={type="sgd.v1", learning_rate=0.1}', *overrides,
                     inputs=inputs, classes=classes)


def initial(spec: Spec) -> dict[str, np.ndarray]:
    return build_network(spec).state_dict()


def softmax(Z: np.ndarray) -> np.ndarray:
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def mse_grads(X, T, W, b):
    """Gradients of mean_i 0.5 * sum_k (Z - T)^2 for Z = X W + b."""
    dZ = (X @ W + b - T) / len(X)
    return X.T @ dZ, dZ.sum(axis=0)


def ce_grads(X, T, W, b, smoothing: float = 0.0):
    """Gradients of softmax cross-entropy against targets smoothed as documented."""
    smoothed = (1.0 - smoothing) * T + smoothing / T.shape[1]
    dZ = (softmax(X @ W + b) - smoothed) / len(X)
    return X.T @ dZ, dZ.sum(axis=0)


def trained(spec: Spec, data: Prepared):
    result = fit(spec, data)
    state = result.network.state_dict()
    return result, state["layers.0.W"], state["layers.0.b"]


# ------------------------------------------------------------ top level


@effect("spec_version")
def test_spec_version_only_1_is_read(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(npz_spec("v", inputs=4) + "[[network.layers]]\ntype = \"dense.v1\"\n"
                    "units = 3\n[train]\nepochs = 1\n")
    runner = CliRunner()
    assert runner.invoke(app, ["validate", str(spec)]).exit_code == 0
    result = runner.invoke(app, ["validate", str(spec), "--set", "spec_version=2"])
    assert result.exit_code == 2
    assert "spec_version: expected one of 1, found an integer 2" in result.output


@effect("seed")
def test_seed_drives_initial_weights_batch_order_and_validation_split(numbered):
    data = table(n=24)
    base = ("train.epochs=2", "train.batch_size=4")
    first, again = fit(linear(*base), data), fit(linear(*base), data)
    other = fit(linear(*base, "seed=5"), data)
    for name, array in first.network.state_dict().items():
        np.testing.assert_array_equal(array, again.network.state_dict()[name])
    assert not np.array_equal(initial(linear("seed=5"))["layers.0.W"], initial(linear())["layers.0.W"])
    assert not np.array_equal(first.network.state_dict()["layers.0.W"],
                              other.network.state_dict()["layers.0.W"])
    # Batch order: with (numerically) zero initial weights both seeds start alike,
    # yet the epoch's mean loss differs, the batches coming in another order.
    tiny = ("train.epochs=1", "train.batch_size=4")
    a = fit(linear(*tiny, std=1e-300), data).history[0].train_loss
    b = fit(linear(*tiny, "seed=5", std=1e-300), data).history[0].train_loss
    assert a != b
    split = ('data.validation.take_from="train"', "data.validation.size=6")
    assert ids(preprocessed(numbered, *split).x_val) != ids(preprocessed(numbered, *split, "seed=5").x_val)


@effect("name")
def test_name_names_the_run_folder(npz_project, monkeypatch):
    monkeypatch.chdir(npz_project)
    result = CliRunner().invoke(app, ["run", "digits.toml", "-q", "--set", "name=my-experiment",
                                      "--cache-dir", "cache"])
    assert result.exit_code == 0, result.output
    folder = npz_project / "runs" / "my-experiment"
    assert (folder / "model.mlpm").is_file()
    assert (folder / ".mlpspec-run").read_text().strip() == "my-experiment"
    assert 'name = "my-experiment"' in (folder / "spec.resolved.toml").read_text()


# ------------------------------------------------------------ data sources


@pytest.fixture
def npz_project(tmp_path: Path) -> Path:
    """8x8 three-class npz data (bright blocks in different corners) and a spec using it."""
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 60, (n, 8, 8))
        for cls, (r, c) in enumerate([(0, 0), (4, 4), (0, 4)]):
            x[y == cls, r:r + 4, c:c + 4] += 150
        return x.astype(np.uint8), y

    for name, n in (("train", 200), ("test", 90)):
        x, y = split(n)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    (tmp_path / "digits.toml").write_text(
        npz_spec("digits", inputs=64, seed=1, data='[data.validation]\nsize = 30\n')
        + '[[network.layers]]\ntype = "dense.v1"\nunits = 3\n'
        '[train]\nepochs = 1\nbatch_size = 50\n[train.optimizer]\ntype = "sgd.v1"\n'
        "learning_rate = 0.01\n")
    return tmp_path


def data_info(spec_path: Path, *overrides: str) -> dict:
    """`mlpspec data info SPEC --json`, parsed."""
    args = ["data", "info", str(spec_path), "--json"]
    for text in overrides:
        args += ["--set", text]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])


def write_spec(folder: Path, data_lines: str, inputs: int, classes: int) -> Path:
    spec = folder / "s.toml"
    spec.write_text(f'spec_version = 1\nname = "s"\n[data]\n{data_lines}[network]\ninputs = {inputs}\n'
                    f'[[network.layers]]\ntype = "dense.v1"\nunits = {classes}\n[train]\nepochs = 1\n')
    return spec


@effect("data.source = idx", "data.train_images (idx)", "data.train_labels (idx)",
        "data.test_images (idx)", "data.test_labels (idx)", "data.classes (idx)")
def test_idx_source_reads_each_declared_file(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"a.idx": rng.integers(0, 256, (7, 3, 2), dtype=np.uint8),
              "b.idx": (np.arange(7) % 4).astype(np.uint8),
              "c.idx": rng.integers(0, 256, (5, 3, 2), dtype=np.uint8),
              "d.idx": np.array([4, 4, 0, 1, 4], np.uint8)}
    payloads = {name: encode_idx(array) for name, array in arrays.items()}
    for name, payload in payloads.items():  # gzip or raw: both are read
        (tmp_path / name).write_bytes(gzip.compress(payload) if name == "a.idx" else payload)
    spec = write_spec(tmp_path, 'source = "idx"\ntrain_images = "a.idx"\ntrain_labels = "b.idx"\n'
                      'test_images = "c.idx"\ntest_labels = "d.idx"\nclasses = 5\n', 6, 5)
    info = data_info(spec)
    assert (info["train"]["samples"], info["test"]["samples"]) == (7, 5)
    assert info["train"]["shape"] == [3, 2]
    assert info["train"]["class_counts"] == [2, 2, 2, 1, 0]  # five classes, from b.idx
    assert info["test"]["class_counts"] == [1, 1, 0, 0, 3]  # from d.idx
    roles = {"train_images": "a.idx", "train_labels": "b.idx", "test_images": "c.idx",
             "test_labels": "d.idx"}
    assert info["checksums"] == {role: hashlib.sha256(payloads[name]).hexdigest()
                                 for role, name in roles.items()}
    # Swapping the two image keys swaps what is read.
    swapped = data_info(spec, 'data.train_images="c.idx"', 'data.test_images="a.idx"',
                        'data.train_labels="d.idx"', 'data.test_labels="b.idx"')
    assert (swapped["train"]["samples"], swapped["test"]["samples"]) == (5, 7)
    # Fewer classes: label 4 no longer fits.
    result = CliRunner().invoke(app, ["data", "info", str(spec), "--set", "data.classes=4",
                                      "--set", "network.layers[0].units=4"])
    assert result.exit_code == 2 and "labels must be in [0, 4), found 4" in result.output


@effect("data.source = npz", "data.train (npz)", "data.test (npz)", "data.classes (npz)")
def test_npz_source_reads_train_and_test_archives(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "one.npz", x=rng.random((9, 4)), y=np.array([0, 1, 2] * 3))
    np.savez(tmp_path / "two.npz", x=rng.random((4, 4)), y=np.array([2, 2, 2, 1]))
    spec = write_spec(tmp_path, 'source = "npz"\ntrain = "one.npz"\ntest = "two.npz"\nclasses = 3\n', 4, 3)
    info = data_info(spec)
    assert info["train"]["class_counts"] == [3, 3, 3]
    assert info["test"]["class_counts"] == [0, 1, 3]
    assert info["checksums"]["train"] == hashlib.sha256((tmp_path / "one.npz").read_bytes()).hexdigest()
    swapped = data_info(spec, 'data.train="two.npz"', 'data.test="one.npz"')
    assert swapped["train"]["class_counts"] == [0, 1, 3]
    assert data_info(spec, "data.classes=6", "network.layers[0].units=6")["test"]["class_counts"] == [0, 1, 3, 0, 0, 0]


@effect("data.source = csv", "data.train (csv)", "data.test (csv)", "data.classes (csv)",
        "data.label_column (csv)", "data.header (csv)")
def test_csv_source_label_column_and_header(tmp_path):
    (tmp_path / "train.csv").write_text("0,9,1\n1,8,2\n2,7,2\n0,6,0\n")
    (tmp_path / "test.csv").write_text("1,5,1\n2,4,0\n")
    spec = write_spec(tmp_path, 'source = "csv"\ntrain = "train.csv"\ntest = "test.csv"\nclasses = 3\n',
                      2, 3)
    first = data_info(spec)  # label_column 0, no header
    assert first["train"]["class_counts"] == [2, 1, 1] and first["train"]["shape"] == [2]
    assert first["test"]["class_counts"] == [0, 1, 1]
    last = data_info(spec, "data.label_column=2")
    assert last["train"]["class_counts"] == [1, 1, 2] and last["test"]["class_counts"] == [1, 1, 0]
    headed = data_info(spec, "data.header=true")  # the first line is skipped
    assert headed["train"]["samples"] == 3 and headed["train"]["class_counts"] == [1, 1, 1]
    assert headed["test"]["samples"] == 1
    assert data_info(spec, "data.classes=4", "network.layers[0].units=4")["train"]["class_counts"] == [2, 1, 1, 0]
    swapped = data_info(spec, 'data.train="test.csv"', 'data.test="train.csv"')
    assert (swapped["train"]["samples"], swapped["test"]["samples"]) == (2, 4)


@effect("data.source = mnist")
def test_mnist_source_is_the_real_mnist(mnist_env, tmp_path):
    spec = write_spec(tmp_path, 'source = "mnist"\n', 784, 10)
    info = data_info(spec)
    assert info["name"] == "mnist" and info["classes"] == 10
    assert (info["train"]["samples"], info["test"]["samples"]) == (60000, 10000)
    assert info["train"]["shape"] == [28, 28]
    assert info["checksums"]["train-images-idx3-ubyte"] == (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db")


class StopFetching(Exception):
    """Raised instead of reaching out to a public mirror."""


class FetchLog(Progress):
    def __init__(self):
        self.fetched: list[str] = []

    def message(self, text: str) -> None:
        if text.startswith("fetching "):
            location = text.removeprefix("fetching ")
            self.fetched.append(location)
            if location.startswith("http"):
                raise StopFetching(location)


@effect("data.mirrors (mnist)", "data.mirrors (fashion-mnist)", "data.source = fashion-mnist")
@pytest.mark.parametrize("source, public", [
    ("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    ("fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")])
def test_spec_mirrors_are_tried_after_the_environment_and_before_the_public_ones(
        tmp_path, monkeypatch, source, public):
    env_mirror, spec_mirror = tmp_path / "env-mirror", tmp_path / "spec-mirror"
    env_mirror.mkdir()
    spec_mirror.mkdir()
    monkeypatch.setenv("MLPSPEC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLPSPEC_MIRRORS", str(env_mirror))
    spec = parse_spec(f'spec_version = 1\nname = "m"\n[data]\nsource = "{source}"\n'
                      f'mirrors = ["{spec_mirror}"]\n[network]\ninputs = 784\n'
                      '[[network.layers]]\ntype = "dense.v1"\nunits = 10\n[train]\nepochs = 1\n')
    log = FetchLog()
    with pytest.raises(StopFetching):
        Pipeline(spec, tmp_path, Cache(tmp_path / "cache"), log).entry("load")
    name = "train-images-idx3-ubyte"
    assert log.fetched == [f"{env_mirror}/{name}.gz", f"{env_mirror}/{name}",
                           f"{spec_mirror}/{name}.gz", f"{spec_mirror}/{name}", f"{public}{name}.gz"]


@effect("data.mirrors (mnist)")
def test_spec_mirror_alone_supplies_mnist(tmp_path, monkeypatch):
    """The effect of `data.mirrors` end to end: no environment mirror, an empty
    data home, and the dataset still loads, from the spec's mirror."""
    mirror = mnist_mirror()
    if mirror is None:
        pytest.skip("the local MNIST copy is not available")
    monkeypatch.setenv("MLPSPEC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLPSPEC_MIRRORS", raising=False)
    spec = write_spec(tmp_path, f'source = "mnist"\nmirrors = ["{mirror}"]\n', 784, 10)
    result = CliRunner().invoke(app, ["data", "info", str(spec), "--json"])
    assert result.exit_code == 0, result.output
    assert f"fetching {mirror}/train-images-idx3-ubyte.gz" in result.output
    assert "http" not in result.output.split("{")[0]


# ------------------------------------------------------------ preprocessing and validation


def preprocessed(folder: Path, *overrides: str, name: str = "p") -> Prepared:
    """The preprocess stage's output for the npz data in `folder` (raw values unless
    `data.preprocess.scale` is overridden)."""
    spec = parse_spec(npz_spec(name, inputs=4) + '[[network.layers]]\ntype = "dense.v1"\n'
                      "units = 3\n[train]\nepochs = 1\n", str(folder / f"{name}.toml"),
                      ('data.preprocess.scale="none"', "data.validation.size=10", *overrides))
    pipeline = Pipeline(spec, folder, Cache(folder / "cache"), Progress())
    pipeline.entry("preprocess")
    return pipeline.prepared()


@pytest.fixture
def numbered(tmp_path: Path) -> Path:
    """npz data whose sample i has the features [i, 2i, 3i, 4i] (as 2x2 images);
    60 training samples (classes 0 x 40, 1 x 15, 2 x 5), 30 test samples."""
    def split(n, labels):
        i = np.arange(n, dtype=np.float64)
        return (np.stack([i, 2 * i, 3 * i, 4 * i], axis=1).reshape(n, 2, 2), labels)

    x, y = split(60, np.array([0] * 40 + [1] * 15 + [2] * 5))
    np.savez(tmp_path / "train.npz", x=x, y=y)
    x, y = split(30, np.arange(30) % 3)
    np.savez(tmp_path / "test.npz", x=x + 1000, y=y)
    return tmp_path


def ids(x: np.ndarray) -> list[int]:
    """Which samples of `numbered` these (unscaled) rows are."""
    return [int(v) for v in x.reshape(len(x), -1)[:, 0]]


@effect("data.preprocess.scale")
def test_scale_unit_standardize_none(numbered):
    none = preprocessed(numbered, 'data.preprocess.scale="none"', "data.validation.size=10")
    unit = preprocessed(numbered, 'data.preprocess.scale="unit"', "data.validation.size=10")
    std = preprocessed(numbered, 'data.preprocess.scale="standardize"', "data.validation.size=10")
    raw = np.load(numbered / "train.npz")["x"].reshape(60, 4)
    np.testing.assert_array_equal(none.x_train, raw.astype(np.float32))
    np.testing.assert_allclose(unit.x_train, raw / 255, rtol=1e-6)
    np.testing.assert_allclose(std.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(std.x_train.std(axis=0), 1.0, rtol=1e-5)
    # Fitted on the training split only: the test set is shifted by 1000 and stays so.
    mean, spread = raw.mean(axis=0), raw.std(axis=0)
    np.testing.assert_allclose(std.x_test, (none.x_test - mean) / spread, rtol=1e-5)


@effect("data.preprocess.flatten")
def test_flatten_turns_images_into_feature_vectors(numbered):
    flat = preprocessed(numbered, "data.preprocess.flatten=true")
    assert flat.x_train.shape == (60, 4) and flat.sample_shape == (2, 2)
    np.testing.assert_array_equal(flat.x_train, np.load(numbered / "train.npz")["x"].reshape(60, 4))
    with pytest.raises(MlpspecError, match="data.preprocess.flatten: dense layers take flat inputs"):
        preprocessed(numbered, "data.preprocess.flatten=false", name="q")


@effect("data.preprocess.one_hot")
def test_one_hot_decides_the_training_targets(numbered):
    encoded = preprocessed(numbered, "data.preprocess.one_hot=true")
    labels = preprocessed(numbered, "data.preprocess.one_hot=false", name="q")
    np.testing.assert_array_equal(encoded.t_train, np.eye(3)[encoded.y_train])
    assert encoded.t_train.dtype == np.float32
    np.testing.assert_array_equal(labels.t_train, labels.y_train)
    # Both reach the same cross-entropy through fit.
    spec = make_spec([dense(3)], inputs=4)
    a, b = fit(spec, encoded).history[0], fit(spec, labels).history[0]
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-6)


@effect("data.validation.take_from")
def test_take_from_test_train_or_none(numbered):
    from_test = preprocessed(numbered, 'data.validation.take_from="test"', "data.validation.size=10")
    assert ids(from_test.x_train) == list(range(60))
    assert len(from_test.x_test) == 20 and sorted(ids(from_test.x_val) + ids(from_test.x_test)) == \
        list(range(1000, 1030))
    from_train = preprocessed(numbered, 'data.validation.take_from="train"', "data.validation.size=10")
    assert len(from_train.x_test) == 30 and len(from_train.x_train) == 50
    assert sorted(ids(from_train.x_val) + ids(from_train.x_train)) == list(range(60))
    nothing = preprocessed(numbered, 'data.validation.take_from="none"')
    assert len(nothing.x_val) == 0 and len(nothing.x_train) == 60 and len(nothing.x_test) == 30


@effect("data.validation.size")
def test_size_is_a_count_or_a_fraction(numbered):
    common = ('data.validation.take_from="train"',)
    assert len(preprocessed(numbered, *common, "data.validation.size=7").x_val) == 7
    assert len(preprocessed(numbered, *common, "data.validation.size=0.25").x_val) == 15


@effect("data.validation.shuffle")
def test_shuffle_false_takes_the_first_samples(numbered):
    common = ('data.validation.take_from="train"', "data.validation.size=6")
    first = preprocessed(numbered, *common, "data.validation.shuffle=false")
    assert ids(first.x_val) == [0, 1, 2, 3, 4, 5]
    picked = preprocessed(numbered, *common, "data.validation.shuffle=true")
    other_seed = preprocessed(numbered, *common, "data.validation.shuffle=true", "seed=9")
    assert ids(picked.x_val) != [0, 1, 2, 3, 4, 5]
    assert ids(picked.x_val) != ids(other_seed.x_val)  # random, from the seed
    assert ids(picked.x_val) == sorted(ids(picked.x_val))  # file order kept


@effect("data.validation.stratify")
def test_stratify_keeps_class_shares(numbered):
    common = ('data.validation.take_from="train"', "data.validation.size=12")
    counts = {}
    for seed in range(4):
        for stratify in ("true", "false"):
            data = preprocessed(numbered, *common, f"data.validation.stratify={stratify}",
                                f"seed={seed}")
            counts[seed, stratify] = np.bincount(data.y_val, minlength=3).tolist()
    assert all(counts[seed, "true"] == [8, 3, 1] for seed in range(4))  # 40:15:5 of 12
    assert any(counts[seed, "false"] != [8, 3, 1] for seed in range(4))
