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
from mlpspec.errors import MlpspecError, SpecError
from mlpspec.nn import Network
from mlpspec.pipeline import Pipeline
from mlpspec.progress import Progress
from mlpspec.spec import Spec, parse_spec
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
    """`fit`, and the first layer's trained W and b."""
    result = fit(spec, data)
    state = result.network.state_dict()
    return result, state["layers.0.W"], state["layers.0.b"]


# ------------------------------------------------------------ top level


@effect("spec_version")
def test_spec_version_only_1_is_read(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(npz_spec("v", inputs=4) + "[[network.layers]]\ntype = \"dense.v1\"\n"
                    "units = 3\n[train]\nepochs = 1\n")
    tiny_npz_files(tmp_path)  # validate reads the data files' headers
    runner = CliRunner()
    assert runner.invoke(app, ["validate", str(spec)]).exit_code == 0
    result = runner.invoke(app, ["validate", str(spec), "--set", "spec_version=2"])
    assert result.exit_code == 2
    assert "spec_version: expected one of 1, found an integer 2" in result.output


@effect("task")
def test_task_regression_reads_float_targets_and_scores_rmse(tmp_path):
    from test_regression import write_project

    spec = write_project(tmp_path, targets=2)
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(spec), "--json", "--cache-dir", str(tmp_path / "cache"),
                                 "--out", str(tmp_path / "run"), "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["test"]) == {"rmse", "mae", "r2", "loss", "samples"}
    # The same data as classification: its float target rows are not class labels.
    result = runner.invoke(app, ["run", str(spec), "--cache-dir", str(tmp_path / "cache"),
                                 "--set", 'task="classification"', "--set", "data.classes=2",
                                 "--set", 'train.loss={type="softmax_cross_entropy.v1"}'])
    assert result.exit_code == 2 and "y: expected labels of shape (n_samples,)" in result.output


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
    """8x8 three-class npz data (bright blocks in different corners, a fifth of the
    labels wrong, so that no model is perfect) and a spec using it."""
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 60, (n, 8, 8))
        for cls, (r, c) in enumerate([(0, 0), (4, 4), (0, 4)]):
            x[y == cls, r:r + 4, c:c + 4] += 150
        noise = rng.random(n) < 0.2
        y[noise] = (y[noise] + 1) % 3
        return x.astype(np.uint8), y

    for name, n in (("train", 200), ("test", 90)):
        x, y = split(n)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    (tmp_path / "digits.toml").write_text(
        npz_spec("digits", inputs=64, seed=1,
                 data='[data.validation]\ntake_from = "test"\nsize = 30\nstratify = false\n')
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
                      ('data.preprocess.scale="none"', 'data.validation.take_from="test"',
                       "data.validation.size=10", "data.validation.stratify=false", *overrides))
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


# ------------------------------------------------------------ network


@effect("network.inputs", "network.layers[].units (dense.v1)", "network.layers[].type = dense.v1")
def test_dense_layer_is_x_w_plus_b_with_declared_sizes(npz_project):
    spec = make_spec([dense(7), {"type": "relu.v1"}, dense(3)], 'train.precision="float64"', inputs=5)
    state = initial(spec)
    assert state["layers.0.W"].shape == (5, 7) and state["layers.2.W"].shape == (7, 3)
    assert state["layers.0.b"].tolist() == [0.0] * 7  # biases start at zero
    data = table()
    result = fit(spec, data)
    trained_state = result.network.state_dict()
    expected = (np.maximum(data.x_val @ trained_state["layers.0.W"] + trained_state["layers.0.b"], 0)
                @ trained_state["layers.2.W"] + trained_state["layers.2.b"])
    np.testing.assert_allclose(result.network.predict(data.x_val), expected, rtol=1e-12)
    # Inputs that do not match the data are refused by the pipeline.
    result = CliRunner().invoke(app, ["run", str(npz_project / "digits.toml"), "-q", "--set",
                                      "network.inputs=60", "--cache-dir", str(npz_project / "cache"),
                                      "--out", str(npz_project / "out")])
    assert result.exit_code == 2 and "network.inputs: expected 64" in result.output


INIT_SCALES = {  # documented std of each initialiser for a (400, 200) layer
    "normal": 0.3,
    "he_normal": math.sqrt(2 / 400),
    "he_uniform": math.sqrt(6 / 400) / math.sqrt(3),
    "glorot_normal": math.sqrt(2 / 600),
    "glorot_uniform": math.sqrt(6 / 600) / math.sqrt(3),
}


@effect("network.layers[].init (dense.v1)", "network.layers[].std (dense.v1)")
@pytest.mark.parametrize("init", sorted(INIT_SCALES))
def test_init_draws_weights_with_the_documented_spread(init):
    spec = make_spec([dense(200, init=init, std=0.3), {"type": "relu.v1"}, dense(3)], inputs=400)
    W = initial(spec)["layers.0.W"].astype(np.float64)
    assert W.std() == pytest.approx(INIT_SCALES[init], rel=0.02)
    assert abs(W.mean()) < 0.05 * INIT_SCALES[init]
    if init.endswith("uniform"):
        limit = INIT_SCALES[init] * math.sqrt(3)
        assert np.abs(W).max() <= limit and np.abs(W).max() > 0.99 * limit
    else:
        assert np.abs(W).max() > 3.5 * INIT_SCALES[init]  # normal tails, not uniform
    # `std` is read by `normal` only.
    other = make_spec([dense(200, init=init, std=0.05), {"type": "relu.v1"}, dense(3)], inputs=400)
    W_other = initial(other)["layers.0.W"].astype(np.float64)
    if init == "normal":
        np.testing.assert_allclose(W_other, W * (0.05 / 0.3), rtol=1e-6)
    else:
        np.testing.assert_array_equal(W_other, W)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


ACTIVATIONS = {
    "relu.v1": ({}, lambda x: np.maximum(x, 0)),
    "leaky_relu.v1": ({"alpha": 0.2}, lambda x: np.where(x > 0, x, 0.2 * x)),
    "sigmoid.v1": ({}, lambda x: 1 / (1 + np.exp(-x))),
    "tanh.v1": ({}, np.tanh),
    "gelu.v1": ({}, _gelu_tanh),
}


@effect(*(f"network.layers[].type = {name}" for name in ACTIVATIONS),
        "network.layers[].alpha (leaky_relu.v1)")
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_applies_its_formula(name):
    keys, formula = ACTIVATIONS[name]
    spec = make_spec([dense(6, init="normal", std=1.0), {"type": name, **keys}, dense(3)],
                     'train.precision="float64"', inputs=5)
    data = table()
    result = fit(spec, data)
    s = result.network.state_dict()
    hidden = data.x_val @ s["layers.0.W"] + s["layers.0.b"]
    expected = formula(hidden) @ s["layers.2.W"] + s["layers.2.b"]
    np.testing.assert_allclose(result.network.predict(data.x_val), expected, rtol=1e-10, atol=1e-12)
    if name == "gelu.v1":  # the tanh form is within 1e-3 of the exact x * Phi(x)
        erf = np.vectorize(math.erf)
        exact = hidden * 0.5 * (1 + erf(hidden / math.sqrt(2)))
        np.testing.assert_allclose(_gelu_tanh(hidden), exact, atol=1e-3)
    if name == "leaky_relu.v1":  # a different alpha, a different network
        other = make_spec([dense(6, init="normal", std=1.0), {"type": name, "alpha": 0.5}, dense(3)],
                          'train.precision="float64"', inputs=5)
        assert not np.allclose(fit(other, data).network.predict(data.x_val), expected)


def recovered_inputs(layers: list[dict], data: Prepared, *overrides: str) -> tuple[np.ndarray, object]:
    """The training inputs `(classes, features)` one SGD step saw, read back from the weights.

    `data` has one sample per class (sample c of class c). One full-batch step
    at learning rate n of `layers + [dense(n), init ~ N(0, 1e-30)]` under MSE
    moves the last W by X^T (T - Z), Z ~ 1e-29: column c becomes x_c as the
    step saw it (after the layers before the dense one).
    """
    n, features = len(data.x_train), data.x_train.shape[1]
    spec = make_spec([*layers, dense(n, init="normal", std=1e-30)], 'train.precision="float64"',
                     'train.loss={type="mse.v1"}', f'train.optimizer={{type="sgd.v1", learning_rate={n}}}',
                     f"train.batch_size={n}", *overrides, inputs=features, classes=n)
    result = fit(spec, data)
    W = result.network.state_dict()[f"layers.{len(layers)}.W"]
    return W.T, result


@effect("network.layers[].type = dropout.v1", "network.layers[].rate (dropout.v1)")
@pytest.mark.parametrize("rate", [0.25, 0.6])
def test_dropout_drops_a_share_in_training_and_nothing_at_evaluation(rate):
    n, features = 8, 500
    x = np.ones((n, features))
    data = prepared(x, np.arange(n), n, x_val=np.full((3, features), 2.0), y_val=np.arange(3))
    seen, result = recovered_inputs([{"type": "dropout.v1", "rate": rate}], data)
    kept = seen > 0.5
    np.testing.assert_allclose(seen[kept], 1 / (1 - rate), rtol=1e-12)  # inverted: scaled up
    np.testing.assert_allclose(seen[~kept], 0.0, atol=1e-12)
    assert (~kept).mean() == pytest.approx(rate, abs=0.03)
    # At evaluation: the identity, so the network without the dropout layer.
    s = result.network.state_dict()
    once, twice = result.network.predict(data.x_val), result.network.predict(data.x_val)
    np.testing.assert_array_equal(once, twice)
    np.testing.assert_allclose(once, data.x_val @ s["layers.1.W"] + s["layers.1.b"], rtol=1e-12)
    history_loss = result.history[0].val_loss
    assert history_loss == pytest.approx(0.5 * np.mean(np.sum((once - np.eye(n)[:3]) ** 2, axis=1)))


@effect("network.layers[].type = batchnorm.v1", "network.layers[].momentum (batchnorm.v1)",
        "network.layers[].epsilon (batchnorm.v1)")
@pytest.mark.parametrize("momentum, epsilon", [(0.9, 1e-5), (0.5, 0.7)])
def test_batchnorm_running_statistics_and_evaluation(momentum, epsilon):
    data = table(n=12, features=5)
    X = data.x_train
    spec = make_spec([{"type": "batchnorm.v1", "momentum": momentum, "epsilon": epsilon}, dense(3)],
                     'train.precision="float64"', "train.batch_size=12", "train.epochs=2",
                     inputs=5)
    result = fit(spec, data)
    s = result.network.state_dict()
    # Two full-batch steps: running = m * running + (1 - m) * batch statistic,
    # from mean 0 and variance 1, the variance unbiased (n / (n - 1)).
    mean, var = X.mean(axis=0), X.var(axis=0, ddof=1)
    np.testing.assert_allclose(s["layers.0.running_mean"], (1 - momentum ** 2) * mean, rtol=1e-10)
    np.testing.assert_allclose(s["layers.0.running_var"], momentum ** 2 + (1 - momentum ** 2) * var,
                               rtol=1e-10)
    # Evaluation uses the running statistics (so one sample alone is scored the same).
    normalised = ((data.x_val - s["layers.0.running_mean"]) / np.sqrt(s["layers.0.running_var"] + epsilon)
                  * s["layers.0.gamma"] + s["layers.0.beta"])
    expected = normalised @ s["layers.1.W"] + s["layers.1.b"]
    np.testing.assert_allclose(result.network.predict(data.x_val), expected, rtol=1e-10)
    np.testing.assert_allclose(result.network.predict(data.x_val[:1]), expected[:1], rtol=1e-10)


# ------------------------------------------------------------ train


@effect("train.epochs", "train.batch_size")
@pytest.mark.parametrize("epochs, batch_size, steps", [(3, 5, 3), (2, 4, 3), (1, 12, 1), (2, 100, 1)])
def test_epochs_and_steps_per_epoch(epochs, batch_size, steps):
    seen: list[tuple[int, int]] = []
    result = fit(linear(f"train.epochs={epochs}", f"train.batch_size={batch_size}"), table(n=12),
                 on_step=lambda epoch, batch, loss, accuracy: seen.append((epoch, batch)))
    assert [r.epoch for r in result.history] == list(range(1, epochs + 1))
    assert seen == [(e, b) for e in range(1, epochs + 1) for b in range(1, steps + 1)]


@effect("train.precision")
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_precision_is_the_dtype_of_weights_and_outputs(precision):
    spec = make_spec([dense(4), {"type": "relu.v1"}, dense(3)], f'train.precision="{precision}"', inputs=5)
    data = table()
    result = fit(spec, data)
    assert {a.dtype for a in result.network.state_dict().values()} == {np.dtype(precision)}
    assert result.network.predict(data.x_val).dtype == np.dtype(precision)


@effect("train.loss.type = mse.v1", "train.loss.type = softmax_cross_entropy.v1",
        "train.loss.label_smoothing (softmax_cross_entropy.v1)")
@pytest.mark.parametrize("loss, smoothing", [("mse.v1", None), ("softmax_cross_entropy.v1", 0.0),
                                             ("softmax_cross_entropy.v1", 0.3)])
def test_loss_value_and_gradient_step(loss, smoothing):
    data = table()
    X, T = data.x_train, data.t_train
    keys = f'type="{loss}"' + ("" if smoothing is None else f", label_smoothing={smoothing}")
    spec = linear("train.batch_size=12", f"train.loss={{{keys}}}")
    s0 = initial(spec)
    W0, b0 = s0["layers.0.W"], s0["layers.0.b"]
    result, W, b = trained(spec, data)
    Z = X @ W0 + b0
    if loss == "mse.v1":
        value = 0.5 * np.mean(np.sum((Z - T) ** 2, axis=1))
        dW, db = mse_grads(X, T, W0, b0)
    else:
        target = (1 - smoothing) * T + smoothing / 3
        value = -np.mean(np.sum(target * np.log(softmax(Z)), axis=1))
        dW, db = ce_grads(X, T, W0, b0, smoothing)
    assert result.history[0].train_loss == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(W, W0 - 0.1 * dW, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b, b0 - 0.1 * db, rtol=1e-12, atol=1e-15)
    if loss != "mse.v1":  # integer label targets (one_hot = false) take the same step
        labels = prepared(X, data.y_train, 3, x_val=data.x_val, y_val=data.y_val, targets=data.y_train)
        _, W_labels, _ = trained(spec, labels)
        np.testing.assert_allclose(W_labels, W, rtol=1e-12)


def hand_steps(spec: Spec, data: Prepared, steps: int, update: Callable, grads=mse_grads):
    """`steps` full-batch steps from the spec's initial weights with `update(params, grads, t)`."""
    s0 = initial(spec)
    params = [s0["layers.0.W"].copy(), s0["layers.0.b"].copy()]
    for t in range(1, steps + 1):
        update(params, list(grads(data.x_train, data.t_train, *params)), t)
    return params


def sgd(lr):
    def update(params, grads, t):
        for p, g in zip(params, grads):
            p -= lr * g
    return update


def momentum_update(lr, mu, nesterov=False):
    velocity: list = []

    def update(params, grads, t):
        if not velocity:
            velocity.extend(np.zeros_like(p) for p in params)
        for p, g, v in zip(params, grads, velocity):
            v *= mu
            v += g
            p -= lr * (g + mu * v) if nesterov else lr * v
    return update


def adam_update(lr, b1, b2, eps, weight_decay=0.0):
    moments: list = []

    def update(params, grads, t):
        if not moments:
            moments.extend([np.zeros_like(p), np.zeros_like(p)] for p in params)
        for p, g, (m, s) in zip(params, grads, moments):
            p *= 1 - lr * weight_decay
            m[...] = b1 * m + (1 - b1) * g
            s[...] = b2 * s + (1 - b2) * g * g
            p -= lr * (m / (1 - b1 ** t)) / (np.sqrt(s / (1 - b2 ** t)) + eps)
    return update


OPTIMIZER_CASES = {
    "sgd.v1": ("learning_rate=0.3", lambda: sgd(0.3)),
    "momentum.v1": ("learning_rate=0.2, momentum=0.6", lambda: momentum_update(0.2, 0.6)),
    "nesterov.v1": ("learning_rate=0.2, momentum=0.6", lambda: momentum_update(0.2, 0.6, True)),
    "adam.v1": ("learning_rate=0.05, beta1=0.7, beta2=0.8, epsilon=0.01",
                lambda: adam_update(0.05, 0.7, 0.8, 0.01)),
    "adamw.v1": ("learning_rate=0.05, beta1=0.7, beta2=0.8, epsilon=0.01, weight_decay=0.5",
                 lambda: adam_update(0.05, 0.7, 0.8, 0.01, 0.5)),
}


def _optimizer_keys():
    keys = []
    for name, (settings, _) in OPTIMIZER_CASES.items():
        keys.append(f"train.optimizer.type = {name}")
        keys += [f"train.optimizer.{part.split('=')[0].strip()} ({name})" for part in settings.split(",")]
    return keys


@effect(*_optimizer_keys())
@pytest.mark.parametrize("name", sorted(OPTIMIZER_CASES))
def test_optimizer_matches_three_hand_worked_steps(name):
    settings, make_update = OPTIMIZER_CASES[name]
    spec = linear("train.epochs=3", "train.batch_size=12",
                  f'train.optimizer={{type="{name}", {settings}}}')
    data = table()
    _, W, b = trained(spec, data)
    W_hand, b_hand = hand_steps(spec, data, 3, make_update())
    np.testing.assert_allclose(W, W_hand, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(b, b_hand, rtol=1e-10, atol=1e-13)
    # Each setting matters: changing any one of them changes the weights.
    for part in settings.split(","):
        key, value = (s.strip() for s in part.split("="))
        changed = settings.replace(part.strip(), f"{key}={float(value) * 0.5!r}")
        _, W_other, _ = trained(linear("train.epochs=3", "train.batch_size=12",
                                       f'train.optimizer={{type="{name}", {changed}}}'), data)
        assert not np.allclose(W_other, W, rtol=1e-6, atol=0), key


# ------------------------------------------------------------ schedules


def _onecycle(base, step, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """PyTorch's OneCycleLR (cosine), written out from its documentation."""
    initial_lr, peak = base / div_factor, pct_start * total - 1
    final = initial_lr / final_div_factor

    def cos_between(start, end, fraction):
        return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2

    if step <= peak:
        return cos_between(initial_lr, base, step / peak)
    return cos_between(base, final, (step - peak) / (total - 1 - peak))


SCHEDULE_CASES = {  # settings, lr(base, step, steps_per_epoch, total steps) before warm-up
    "constant.v1": ("", lambda base, k, spe, total: base),
    "step.v1": ("step_epochs=2, gamma=0.5", lambda base, k, spe, total: base * 0.5 ** ((k // spe) // 2)),
    "exponential.v1": ("gamma=0.7", lambda base, k, spe, total: base * 0.7 ** (k / spe)),
    "cosine.v1": ("min_lr=0.01", lambda base, k, spe, total:
                  0.01 + (base - 0.01) * (1 + math.cos(math.pi * k / total)) / 2),
    "onecycle.v1": ("pct_start=0.4, div_factor=5.0, final_div_factor=20.0",
                    lambda base, k, spe, total: _onecycle(base, k, total, 0.4, 5.0, 20.0)),
}


def _schedule_keys():
    keys = []
    for name, (settings, _) in SCHEDULE_CASES.items():
        keys.append(f"train.schedule.type = {name}")
        keys += [f"train.schedule.{part.split('=')[0].strip()} ({name})"
                 for part in settings.split(",") if part]
        if name != "onecycle.v1":
            keys.append(f"train.schedule.warmup_epochs ({name})")
    return keys


@effect(*_schedule_keys())
@pytest.mark.parametrize("name, batch_size, warmup", [
    (name, batch_size, warmup) for name in sorted(SCHEDULE_CASES)
    for batch_size, warmup in [(12, 0.0), (12, 2.5), (3, 1.5)]
    if not (warmup and name == "onecycle.v1")])  # one-cycle has its own warm-up phase
def test_schedule_learning_rates_follow_the_formula(name, batch_size, warmup):
    settings, formula = SCHEDULE_CASES[name]
    if warmup:
        settings = ", ".join(filter(None, [settings, f"warmup_epochs={warmup}"]))
    epochs, spe, base = 8, 12 // batch_size, 0.2
    total = epochs * spe
    spec = linear(f"train.epochs={epochs}", f"train.batch_size={batch_size}",
                  f"train.optimizer.learning_rate={base}", f'train.schedule={{type="{name}", {settings}}}'
                  if settings else f'train.schedule={{type="{name}"}}')

    def lr(k):
        value = formula(base, k, spe, total)
        if k < warmup * spe:  # linear warm-up over W steps: step k at (k + 1) / W of the rate
            value *= min(1.0, (k + 1) / (warmup * spe))
        return value

    data = table()
    result, W, b = trained(spec, data)
    # The history records each epoch's last step.
    recorded = [r.learning_rate for r in result.history]
    np.testing.assert_allclose(recorded, [lr(e * spe - 1) for e in range(1, epochs + 1)], rtol=1e-12)
    if name != "constant.v1" or warmup:
        assert len(set(np.round(recorded, 12))) > 1  # the rate does change
    if spe == 1:  # full-batch steps: the weights took exactly those rates
        rates = [lr(k) for k in range(total)]
        W_hand, b_hand = hand_steps(spec, data, total, lambda params, grads, t: sgd(rates[t - 1])(
            params, grads, t))
        np.testing.assert_allclose(W, W_hand, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------ regularisation


@effect("train.regularization.l2")
def test_l2_adds_l2_over_batch_times_w_to_the_weight_gradient():
    spec = linear("train.epochs=2", "train.batch_size=12", "train.regularization.l2=3.0")
    data = table()

    def update(params, grads, t):
        grads[0] = grads[0] + (3.0 / 12) * params[0]  # weights only, not the bias
        sgd(0.1)(params, grads, t)

    _, W, b = trained(spec, data)
    W_hand, b_hand = hand_steps(spec, data, 2, update)
    np.testing.assert_allclose(W, W_hand, rtol=1e-12)
    np.testing.assert_allclose(b, b_hand, rtol=1e-12, atol=1e-15)
    _, W_plain, _ = trained(linear("train.epochs=2", "train.batch_size=12"), data)
    assert np.abs(W).sum() < np.abs(W_plain).sum()  # it shrinks the weights


@effect("train.regularization.weight_decay")
@pytest.mark.parametrize("optimizer", ['{type="sgd.v1", learning_rate=0.1}',
                                       '{type="momentum.v1", learning_rate=0.1, momentum=0.5}'])
def test_weight_decay_scales_w_by_one_minus_lr_times_decay(optimizer):
    data = table()
    common = ("train.epochs=1", "train.batch_size=12", f"train.optimizer={optimizer}")
    _, W_plain, b_plain = trained(linear(*common), data)
    _, W, b = trained(linear(*common, "train.regularization.weight_decay=2.0"), data)
    np.testing.assert_allclose(W, W_plain * (1 - 0.1 * 2.0), rtol=1e-12)
    np.testing.assert_array_equal(b, b_plain)  # biases are not decayed


@effect("train.regularization.max_norm")
def test_max_norm_rescales_each_units_incoming_weights():
    data = table()
    common = ("train.epochs=1", "train.batch_size=12")
    _, W_plain, b_plain = trained(linear(*common), data)
    norms = np.linalg.norm(W_plain, axis=0)
    cap = float(np.median(norms))  # some columns over it, some under
    _, W, b = trained(linear(*common, f"train.regularization.max_norm={cap!r}"), data)
    over = norms > cap
    assert over.any() and (~over).any()
    np.testing.assert_allclose(np.linalg.norm(W[:, over], axis=0), cap, rtol=1e-12)
    np.testing.assert_allclose(W[:, over], W_plain[:, over] * (cap / norms[over]), rtol=1e-12)
    np.testing.assert_array_equal(W[:, ~over], W_plain[:, ~over])
    np.testing.assert_array_equal(b, b_plain)


@effect("train.regularization.clip_norm")
def test_clip_norm_bounds_the_global_gradient_norm():
    data = table()
    spec = linear("train.epochs=1", "train.batch_size=12")
    s0 = initial(spec)
    dW, db = mse_grads(data.x_train, data.t_train, s0["layers.0.W"], s0["layers.0.b"])
    norm = math.sqrt(np.sum(dW ** 2) + np.sum(db ** 2))
    for clip in (norm / 4, norm * 2):
        _, W, b = trained(linear("train.epochs=1", "train.batch_size=12",
                                 f"train.regularization.clip_norm={clip!r}"), data)
        factor = min(1.0, clip / norm)
        np.testing.assert_allclose(W, s0["layers.0.W"] - 0.1 * factor * dW, rtol=1e-12)
        np.testing.assert_allclose(b, s0["layers.0.b"] - 0.1 * factor * db, rtol=1e-12, atol=1e-15)
        update = math.sqrt(np.sum((W - s0["layers.0.W"]) ** 2) + np.sum((b - s0["layers.0.b"]) ** 2))
        assert update <= 0.1 * clip * (1 + 1e-12)


# ------------------------------------------------------------ early stopping and averaging


def noisy(seed: int = 0) -> Prepared:
    """Overlapping classes, so the validation figures wander instead of climbing."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, 10))

    def sample(n):
        y = np.arange(n) % 3
        return centres[y] + rng.normal(0, 2.5, (n, 10)), y

    (x, y), (x_val, y_val) = sample(90), sample(60)
    return prepared(x, y, 3, x_val=x_val, y_val=y_val)


def stopping_spec(*overrides: str) -> Spec:
    return make_spec([dense(16), {"type": "relu.v1"}, dense(3)], 'train.precision="float64"',
                     "train.epochs=30", "train.batch_size=10",
                     'train.optimizer={type="sgd.v1", learning_rate=0.2}', *overrides, inputs=10)


def expected_stop(history, metric: str, patience: int, min_delta: float) -> tuple[int, int]:
    """(epochs run, best epoch) as documented: stop after `patience` epochs in a row
    that do not beat the best score by more than `min_delta`."""
    best, best_epoch, waited = -math.inf, 0, 0
    for record in history:
        score = {"loss": -record.val_loss, "train_loss": -record.train_loss}.get(
            metric, record.val_accuracy)
        if score > best + min_delta:
            best, best_epoch, waited = score, record.epoch, 0
        else:
            waited += 1
            if waited == patience:
                return record.epoch, best_epoch
    return len(history), best_epoch


def same_weights(a, b) -> bool:
    return all(np.array_equal(array, b.network.state_dict()[k]) for k, array in a.network.state_dict().items())


@effect("train.early_stopping.patience", "train.early_stopping.metric",
        "train.early_stopping.min_delta", "train.early_stopping.restore_best")
@pytest.mark.parametrize("metric, patience, min_delta", [
    ("accuracy", 2, 0.0), ("accuracy", 4, 0.0), ("loss", 2, 0.0), ("loss", 2, 0.004),
    ("accuracy", 3, 0.02), ("train_loss", 2, 0.01)])
def test_early_stopping_stops_and_restores_as_documented(metric, patience, min_delta):
    data = noisy()
    full = fit(stopping_spec(), data)  # no early stopping: every epoch runs
    assert len(full.history) == 30 and not full.stopped_early
    stop, best = expected_stop(full.history, metric, patience, min_delta)
    assert stop < 30
    keys = (f"train.early_stopping.patience={patience}", f'train.early_stopping.metric="{metric}"',
            f"train.early_stopping.min_delta={min_delta}")
    restored = fit(stopping_spec(*keys), data)
    assert restored.stopped_early and len(restored.history) == stop and restored.best_epoch == best
    assert [r.val_loss for r in restored.history] == [r.val_loss for r in full.history[:stop]]
    assert same_weights(restored, fit(stopping_spec(f"train.epochs={best}"), data))
    last = fit(stopping_spec(*keys, "train.early_stopping.restore_best=false"), data)
    assert len(last.history) == stop
    assert same_weights(last, fit(stopping_spec(f"train.epochs={stop}"), data))


@effect("train.early_stopping.metric")
def test_train_loss_early_stopping_needs_no_validation_set(tmp_path):
    """metric = "train_loss" stops on the training loss alone: valid with take_from = "none",
    where every other metric is refused."""
    text = npz_spec("t", inputs=4, data='[data.validation]\ntake_from = "none"\n') + (
        '[[network.layers]]\ntype = "dense.v1"\nunits = 3\n[train]\nepochs = 5\n'
        '[train.early_stopping]\npatience = 2\n')
    with pytest.raises(SpecError, match="early stopping needs a validation set"):
        parse_spec(text, "t.toml")
    (tmp_path / "t.toml").write_text(text + 'metric = "train_loss"\nmin_delta = 1e6\n')
    tiny_npz_files(tmp_path)
    result = CliRunner().invoke(app, ["run", str(tmp_path / "t.toml"), "--json", "--cache-dir",
                                      str(tmp_path / "cache"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # No epoch beats the first by 1e6: stopped after 1 + patience epochs, the first restored.
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 1 and "validation" not in summary


def test_early_stopping_settings_lead_to_different_stops():
    """The cases above are not all alike: metric, patience and min_delta each move the stop."""
    history = fit(stopping_spec(), noisy()).history
    assert expected_stop(history, "accuracy", 2, 0.0) != expected_stop(history, "loss", 2, 0.0)
    assert expected_stop(history, "accuracy", 2, 0.0) != expected_stop(history, "accuracy", 4, 0.0)
    assert expected_stop(history, "loss", 2, 0.0) != expected_stop(history, "loss", 2, 0.004)


@effect("train.averaging.last_epochs")
@pytest.mark.parametrize("last", [1, 2, 4])
def test_averaging_is_the_mean_of_the_last_epochs_weights(last):
    data = noisy()
    spec = stopping_spec("train.epochs=5", f"train.averaging.last_epochs={last}")
    averaged = fit(spec, data)
    runs = [fit(stopping_spec(f"train.epochs={epoch}"), data).network.state_dict()
            for epoch in range(6 - last, 6)]
    for name, array in averaged.network.state_dict().items():
        np.testing.assert_allclose(array, np.mean([run[name] for run in runs], axis=0), rtol=1e-12)
    # The history is that of the running weights.
    plain = fit(stopping_spec("train.epochs=5"), data)
    assert [r.val_loss for r in averaged.history] == [r.val_loss for r in plain.history]


# ------------------------------------------------------------ augmentation

SIZE = 16
CENTRE = (SIZE - 1) / 2


def ramps(n: int) -> np.ndarray:
    """Flattened `(n, SIZE * SIZE)` ramps: even samples are column index + 1, odd ones row index + 1
    (the + 1 keeps them apart from the blank fill 0)."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    return np.stack([cols + 1 if i % 2 == 0 else rows + 1 for i in range(n)]).reshape(n, -1)


def augmented(*keys: str, seed: int = 0) -> tuple[np.ndarray, Prepared, object]:
    """The 16 training ramps as one augmented training step saw them `(16, SIZE, SIZE)`."""
    data = prepared(ramps(16), np.arange(16), 16, x_val=ramps(4), y_val=np.arange(4),
                    sample_shape=(SIZE, SIZE))
    seen, result = recovered_inputs([], data, *keys, f"seed={seed}")
    return seen.reshape(-1, SIZE, SIZE), data, result


def affine_fit(image: np.ndarray, along_columns: bool) -> tuple[float, float, float, float]:
    """(angle in degrees, zoom, shift in pixels, largest residual) of a warped ramp,
    fitted on the central 8x8 pixels (whose sources lie inside the image)."""
    rows, cols = np.mgrid[4:12, 4:12].astype(np.float64)
    A = np.column_stack([(rows - CENTRE).ravel(), (cols - CENTRE).ravel(), np.ones(64)])
    values = image[4:12, 4:12].ravel()
    (a, b, d), *_ = np.linalg.lstsq(A, values, rcond=None)
    # Output pixel p reads the input at R(angle) (p - c) / zoom + c - shift; a ramp
    # returns that source coordinate (+ 1).
    angle = math.atan2(a, b) if along_columns else math.atan2(-b, a)
    return (math.degrees(angle), 1 / math.hypot(a, b), CENTRE + 1 - d,
            float(np.abs(values - A @ (a, b, d)).max()))


def fits(images: np.ndarray) -> np.ndarray:
    """`(n, 4)` affine fits of augmented ramps (even: column ramps, odd: row ramps)."""
    return np.array([affine_fit(image, i % 2 == 0) for i, image in enumerate(images)])


def test_no_augmentation_leaves_the_training_images_alone():
    seen, data, _ = augmented()
    np.testing.assert_allclose(seen.reshape(16, -1), data.x_train, atol=1e-12)


@effect("data.augment.translate")
@pytest.mark.parametrize("translate", [0.7, 2.5])
def test_translate_shifts_within_the_limit(translate):
    seen, data, result = augmented(f"data.augment.translate={translate}")
    angle, zoom, shift, residual = fits(seen).T
    assert np.abs(angle).max() < 1e-6 and np.abs(zoom - 1).max() < 1e-9 and residual.max() < 1e-9
    assert np.abs(shift).max() <= translate + 1e-9
    assert np.abs(shift).max() > translate / 2 and len(np.unique(np.round(shift, 6))) == 16
    assert not np.allclose(shift, np.round(shift))  # sub-pixel shifts
    assert_validation_untouched(data, result)


@effect("data.augment.translate")
def test_distortions_are_drawn_afresh_every_epoch():
    """Two epochs at a tiny learning rate e: W / e is the sum of both epochs' images
    (to ~1e-5), the first epoch's alone from a one-epoch run."""
    data = prepared(ramps(16), np.arange(16), 16, sample_shape=(SIZE, SIZE))

    def image_sums(epochs: int) -> np.ndarray:
        spec = make_spec([dense(16, init="normal", std=1e-30)], 'train.precision="float64"',
                         'train.loss={type="mse.v1"}', 'train.optimizer={type="sgd.v1", '
                         'learning_rate=16e-10}', "train.batch_size=16", f"train.epochs={epochs}",
                         "data.augment.translate=1.5", inputs=SIZE * SIZE, classes=16)
        return fit(spec, data).network.state_dict()["layers.0.W"].T.reshape(-1, SIZE, SIZE) / 1e-10

    first = image_sums(1)
    second = image_sums(2) - first
    _, _, first_shift, first_residual = fits(first).T
    _, _, second_shift, second_residual = fits(second).T
    assert first_residual.max() < 1e-3 and second_residual.max() < 1e-3  # both plain shifts
    assert np.abs(second_shift).max() <= 1.5 + 1e-3
    assert np.abs(first_shift - second_shift).min() > 1e-3  # every image moved anew


def assert_validation_untouched(data: Prepared, result) -> None:
    """The epoch's validation loss is that of the plain validation images."""
    np.testing.assert_array_equal(data.x_val, ramps(4))
    Z = result.network.predict(data.x_val)
    T = np.eye(Z.shape[1])[data.y_val]
    assert result.history[0].val_loss == pytest.approx(0.5 * np.mean(np.sum((Z - T) ** 2, axis=1)),
                                                       rel=1e-12)


@effect("data.augment.whole_pixels")
def test_whole_pixels_shifts_by_integers_with_blank_fill():
    seen, data, result = augmented("data.augment.translate=2", "data.augment.whole_pixels=true")
    shifts = []
    for source, image in zip(ramps(16).reshape(-1, SIZE, SIZE), seen):
        padded = np.pad(source, 2)  # blank (0) beyond the border
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.allclose(image, padded[2 - dy:2 - dy + SIZE, 2 - dx:2 - dx + SIZE], atol=1e-12)]
        assert found, "every image is its source shifted by whole pixels"
        shifts += found
    assert len(set(shifts)) > 3
    fractional = fits(augmented("data.augment.translate=2")[0])[:, 2]
    assert not np.allclose(fractional, np.round(fractional))  # without it: sub-pixel shifts
    angle, _, shift, _ = fits(augmented("data.augment.translate=2", "data.augment.whole_pixels=true",
                                        "data.augment.rotate=10")[0]).T
    assert np.abs(angle).max() > 1  # rotated, and still shifted by whole pixels
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)
    assert np.abs(shift).max() <= 2 + 1e-9
    assert_validation_untouched(data, result)


@effect("data.augment.rotate")
def test_rotate_turns_within_the_limit():
    seen, data, result = augmented("data.augment.rotate=12")
    angle, zoom, shift, residual = fits(seen).T
    assert residual.max() < 1e-9 and np.abs(zoom - 1).max() < 1e-9 and np.abs(shift).max() < 1e-9
    assert np.abs(angle).max() <= 12 + 1e-9 and np.abs(angle).max() > 6
    assert (angle > 0).any() and (angle < 0).any()
    assert_validation_untouched(data, result)


@effect("data.augment.scale")
def test_scale_zooms_within_the_limit():
    seen, data, result = augmented("data.augment.scale=0.2")
    angle, zoom, shift, residual = fits(seen).T
    assert residual.max() < 1e-9 and np.abs(angle).max() < 1e-6 and np.abs(shift).max() < 1e-9
    assert zoom.min() >= 0.8 - 1e-9 and zoom.max() <= 1.2 + 1e-9
    assert zoom.min() < 0.95 and zoom.max() > 1.05
    assert_validation_untouched(data, result)


def displacement(images: np.ndarray) -> np.ndarray:
    """The elastic displacement along each ramp's axis, on the central pixels."""
    plain = ramps(16).reshape(-1, SIZE, SIZE)
    return (images - plain)[:, 4:12, 4:12]


@effect("data.augment.elastic_alpha", "data.augment.elastic_sigma")
def test_elastic_displacement_scales_with_alpha_and_smooths_with_sigma():
    one = displacement(augmented("data.augment.elastic_alpha=0.5")[0])
    two, data, result = augmented("data.augment.elastic_alpha=1.0")
    two = displacement(two)
    assert np.abs(one).max() > 0.01 and np.abs(one).max() <= 0.5
    np.testing.assert_allclose(two, 2 * one, atol=1e-9)  # the same field, twice as strong
    assert_validation_untouched(data, result)

    def roughness(field):  # neighbour differences relative to the size of the field
        return np.abs(np.diff(field, axis=2)).mean() / np.abs(field).mean()

    sharp = displacement(augmented("data.augment.elastic_alpha=1.0", "data.augment.elastic_sigma=1.0")[0])
    smooth = displacement(augmented("data.augment.elastic_alpha=1.0", "data.augment.elastic_sigma=4.0")[0])
    assert roughness(sharp) > 3 * roughness(smooth)


# ------------------------------------------------------------ evaluate


def pipeline_run(project: Path, *overrides: str):
    spec = parse_spec((project / "digits.toml").read_text(), str(project / "digits.toml"), overrides)
    return Pipeline(spec, project, Cache(project / "cache"), Progress()).run(project / "runs" / "out")


WEAK = "train.optimizer.learning_rate=0.00001"  # a poor model: plenty of mistakes to report


@effect("evaluate.split")
@pytest.mark.parametrize("split", ["test", "validation"])
def test_split_picks_the_headline_and_error_report(npz_project, split):
    metrics = pipeline_run(npz_project, WEAK, f'evaluate.split="{split}"').metrics
    other = {"test": "validation", "validation": "test"}[split]
    assert metrics["headline"] == split
    assert "misclassified" in metrics[split] and "misclassified" not in metrics[other]
    assert metrics[split]["samples"] == {"test": 60, "validation": 30}[split]


@effect("evaluate.misclassified")
@pytest.mark.parametrize("limit", [0, 4, 1000])
def test_misclassified_keeps_that_many_errors(npz_project, limit):
    metrics = pipeline_run(npz_project, WEAK, f"evaluate.misclassified={limit}").metrics["test"]
    wrong = round((1 - metrics["accuracy"]) * metrics["samples"])
    assert wrong > 4
    shown = metrics["misclassified"]
    assert len(shown) == min(limit, wrong) and len(set(shown)) == len(shown)
    confusion = np.array(metrics["confusion_matrix"])
    assert wrong == confusion.sum() - np.trace(confusion)


@effect("evaluate.batch_size")
def test_evaluate_batch_size_is_the_inference_batch(npz_project, monkeypatch):
    pipeline_run(npz_project)  # train once; the next run only evaluates
    sizes: list[int] = []
    forward = Network.forward

    def spy(self, X, *, training):
        if not training:
            sizes.append(len(X))
        return forward(self, X, training=training)

    monkeypatch.setattr(Network, "forward", spy)
    result = pipeline_run(npz_project, "evaluate.batch_size=7")
    assert {r.stage: r.status for r in result.stages}["train"] == "cached"
    assert sorted(sizes) == sorted([7] * 8 + [4] + [7] * 4 + [2])  # 60 test, 30 validation


# --- model side (issue 10)


def regression_data(k: int = 2, n: int = 10, seed: int = 0) -> Prepared:
    """Float64 features and standardised-as-is targets `(n, k)` (target scaling "none")."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, 4))
    y = rng.normal(0.0, 2.0, (n, k))
    none = Scaling("none", np.zeros(k), np.ones(k))
    return Prepared(x, y, y.copy(), x[:0], y[:0], x[:0], y[:0], 0, (), (4,),
                    Scaling("none", np.array(0.0), np.array(1.0)),
                    task="regression", target_names=tuple(f"y{j}" for j in range(k)),
                    target_scaling=none)


def regression_linear(loss: str, k: int = 2) -> Spec:
    return make_spec([dense(k, init="normal", std=0.5)], 'task="regression"',
                     'train.precision="float64"', f"train.loss={{{loss}}}",
                     'train.optimizer={type="sgd.v1", learning_rate=0.1}', "train.batch_size=10",
                     inputs=4, classes=0)


@effect("train.loss.type = mae.v1", "train.loss.type = huber.v1", "train.loss.delta (huber.v1)")
@pytest.mark.parametrize("loss", ['type="mae.v1"', 'type="huber.v1"', 'type="huber.v1", delta=0.4'])
def test_regression_loss_value_and_gradient_step(loss):
    data = regression_data()
    spec = regression_linear(loss)
    s0 = initial(spec)
    W0, b0 = s0["layers.0.W"], s0["layers.0.b"]
    result, W, b = trained(spec, data)
    X, T = data.x_train, data.t_train
    R = X @ W0 + b0 - T
    if "mae" in loss:
        value, dZ = np.abs(R).sum() / 10, np.sign(R) / 10
    else:
        delta = 0.4 if "delta" in loss else 1.0
        inside = np.abs(R) <= delta
        assert inside.any() and (~inside).any()  # both parts of the loss are exercised
        value = np.where(inside, 0.5 * R ** 2, delta * (np.abs(R) - 0.5 * delta)).sum() / 10
        dZ = np.clip(R, -delta, delta) / 10
    assert result.history[0].train_loss == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(W, W0 - 0.1 * X.T @ dZ, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b, b0 - 0.1 * dZ.sum(axis=0), rtol=1e-12, atol=1e-15)


@effect("train.loss.balanced (softmax_cross_entropy.v1)",
        "train.loss.class_weights (softmax_cross_entropy.v1)")
@pytest.mark.parametrize("weights", ["balanced", (0.5, 2.0, 4.0)])
def test_class_weights_scale_each_samples_loss(weights):
    rng = np.random.default_rng(4)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0])  # 7, 3 and 2 samples: unbalanced
    data = prepared(rng.normal(0.0, 1.0, (12, 5)), y, 3)
    keys = "balanced=true" if weights == "balanced" else f"class_weights={list(weights)}"
    spec = linear("train.batch_size=12", f'train.loss={{type="softmax_cross_entropy.v1", {keys}}}',
                  loss="softmax_cross_entropy.v1")
    w = np.array([12 / 21, 12 / 9, 12 / 6]) if weights == "balanced" else np.array(weights)
    s0 = initial(spec)
    W0, b0 = s0["layers.0.W"], s0["layers.0.b"]
    result, W, b = trained(spec, data)
    X, T = data.x_train, data.t_train
    P = softmax(X @ W0 + b0)
    sample_w = w[y][:, None]
    assert result.history[0].train_loss == pytest.approx(
        -np.mean(sample_w[:, 0] * np.sum(T * np.log(P), axis=1)), rel=1e-12)
    dZ = sample_w * (P - T) / 12
    np.testing.assert_allclose(W, W0 - 0.1 * X.T @ dZ, rtol=1e-12, atol=1e-15)
    unweighted = trained(linear("train.batch_size=12", loss="softmax_cross_entropy.v1"), data)[1]
    assert not np.allclose(W, unweighted)


def test_class_weights_must_match_the_classes():
    with pytest.raises(MlpspecError, match=r"train\.loss\.class_weights: expected 3 weights \(one per "
                                           r"class of the data\), found 2"):
        linear('train.loss={type="softmax_cross_entropy.v1", class_weights=[1.0, 2.0]}')
    with pytest.raises(MlpspecError, match=r"expected either balanced = true or explicit class_weights"):
        linear('train.loss={type="softmax_cross_entropy.v1", balanced=true, class_weights=[1, 1, 1]}')
    with pytest.raises(MlpspecError, match=r"class_weights: expected every weight > 0"):
        linear('train.loss={type="softmax_cross_entropy.v1", class_weights=[1.0, 0.0, 1.0]}')


@effect("train.early_stopping.metric")
def test_early_stopping_on_r2_keeps_the_best_r2_epoch():
    data = regression_data(n=40, seed=1)
    rng = np.random.default_rng(2)
    x_val = rng.normal(0.0, 1.0, (12, 4))
    y_val = rng.normal(0.0, 2.0, (12, 2))
    data = Prepared(data.x_train, data.y_train, data.t_train, x_val, y_val, x_val, y_val, 0, (),
                    (4,), data.scaling, task="regression", target_names=data.target_names,
                    target_scaling=data.target_scaling)
    spec = make_spec([dense(2, init="normal", std=0.5)], 'task="regression"',
                     'train.precision="float64"', 'train.loss={type="mse.v1"}',
                     'train.optimizer={type="sgd.v1", learning_rate=0.5}', "train.batch_size=10",
                     "train.epochs=30", "train.early_stopping.patience=3",
                     'train.early_stopping.metric="r2"', inputs=4, classes=0)
    result = fit(spec, data)
    r2 = [record.val_r2 for record in result.history]
    assert result.best_epoch == int(np.argmax(r2)) + 1
    assert all(not math.isnan(v) for v in r2)


# --- small data and images (issue 10)


@effect("data.validation.take_from", "data.validation.size", "data.validation.stratify")
def test_default_validation_is_a_tenth_of_train_stratified(numbered):
    """Without a [data.validation] table: 10 % of the training set, stratified by class,
    drawn from the seed; the test set is left whole (so it works on small data)."""
    def prepared(*overrides: str) -> Prepared:
        spec = parse_spec(npz_spec("d", inputs=4) + '[[network.layers]]\ntype = "dense.v1"\n'
                          "units = 3\n[train]\nepochs = 1\n", str(numbered / "d.toml"),
                          ('data.preprocess.scale="none"', *overrides))
        pipeline = Pipeline(spec, numbered, Cache(numbered / "cache"), Progress())
        pipeline.entry("preprocess")
        return pipeline.prepared()

    default = prepared()
    assert ids(default.x_test) == list(range(1000, 1030))
    assert len(default.x_val) == 6 and len(default.x_train) == 54
    assert sorted(ids(default.x_val) + ids(default.x_train)) == list(range(60))
    # 40:15:5 of 6 by largest remainders: 4, 1.5 -> 2, 0.5 -> 0.
    assert np.bincount(default.y_val, minlength=3).tolist() == [4, 2, 0]
    explicit = prepared('data.validation.take_from="train"', "data.validation.size=0.1",
                        "data.validation.stratify=true", "data.validation.shuffle=true")
    assert ids(explicit.x_val) == ids(default.x_val)


def tiny_npz_files(folder: Path) -> None:
    """`train.npz` (30 samples) and `test.npz` (12) of 4 features and 3 classes in
    `folder`, for specs from `npz_spec(..., inputs=4)` that `validate` checks."""
    for name, n in (("train", 30), ("test", 12)):
        np.savez(folder / f"{name}.npz", x=np.arange(n * 4.0).reshape(n, 4), y=np.arange(n) % 3)


# --- data side (issue 10)


def tabular_prepared(folder: Path, data_lines: str, *, task: str = "classification",
                     precision: str = "float64") -> Prepared:
    """Load and prepare the CSV files `folder`/train.csv and test.csv as `data_lines` say."""
    from mlpspec.data.prepare import load_raw, prepare

    text = (f'spec_version = 1\nname = "t"\n[data]\nsource = "csv"\ntrain = "train.csv"\n'
            f'test = "test.csv"\nheader = true\n{data_lines}[network]\ninputs = 1\n'
            f'[[network.layers]]\ntype = "dense.v1"\nunits = 2\n[train]\nepochs = 1\n')
    spec = parse_spec(text, str(folder / "t.toml"))
    raw = load_raw(spec.data, folder, task=task)
    return prepare(raw, spec.data, spec.seed, precision)


@pytest.fixture
def people(tmp_path: Path) -> Path:
    """A small table: id, age (one empty cell), city (categorical), income, label `kind`."""
    (tmp_path / "train.csv").write_text(
        "id,age,city,income,kind\n1,20,paris,10,a\n2,,rome,30,b\n3,40,paris,20,a\n"
        "4,60,oslo,50,b\n5,30,paris,40,a\n")
    (tmp_path / "test.csv").write_text("id,age,city,income,kind\n6,25,rome,15,b\n7,35,lima,45,a\n")
    return tmp_path


NO_VALIDATION = '[data.validation]\ntake_from = "none"\n'


@effect("data.features (csv)", "data.exclude (csv)")
def test_features_and_exclude_choose_the_feature_columns(people):
    base = 'label_column = "kind"\nmissing = "mean"\n'
    chosen = tabular_prepared(people, base + 'features = ["income", "age"]\n'
                              '[data.preprocess]\nscale = "none"\n' + NO_VALIDATION)
    np.testing.assert_array_equal(chosen.x_train[:, 0], [10, 30, 20, 50, 40])  # in the listed order
    np.testing.assert_array_equal(chosen.x_train[:, 1], [20, 37.5, 40, 60, 30])
    assert [f.name for f in chosen.encoder.features] == ["income", "age"]
    base += 'categorical = ["city"]\nunseen = "ignore"\n'
    excluded = tabular_prepared(people, base + 'exclude = ["id", "income"]\n'
                                '[data.preprocess]\nscale = "none"\n' + NO_VALIDATION)
    assert excluded.encoder.input_names() == ["age", "city=oslo", "city=paris", "city=rome"]
    everything = tabular_prepared(people, base + '[data.preprocess]\nscale = "none"\n' + NO_VALIDATION)
    assert everything.encoder.input_names()[0] == "id" and everything.x_train.shape == (5, 6)


@effect("data.categorical (csv)", "data.unseen (csv)")
def test_categorical_columns_are_one_hot_over_the_training_categories(people):
    base = ('label_column = "kind"\nfeatures = ["city"]\ncategorical = ["city"]\n'
            '[data.preprocess]\nscale = "none"\n')
    ignored = tabular_prepared(people, 'unseen = "ignore"\n' + base + NO_VALIDATION)
    np.testing.assert_array_equal(ignored.x_train, [[0, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0],
                                                    [0, 1, 0]])
    np.testing.assert_array_equal(ignored.x_test, [[0, 0, 1], [0, 0, 0]])  # lima: unseen -> zeros
    with pytest.raises(MlpspecError, match=r"data.test: column 'city': category 'lima' .*data.unseen"):
        tabular_prepared(people, base + NO_VALIDATION)
    # Categories come from the training split only: rome held out for validation is unseen.
    with pytest.raises(MlpspecError, match=r"category 'rome'"):
        tabular_prepared(people, base + '[data.validation]\ntake_from = "train"\nsize = 2\n'
                         'shuffle = false\n')  # the first two rows (paris, rome) validate
    with pytest.raises(MlpspecError, match=r"expected a number, found 'paris'.*data.categorical"):
        tabular_prepared(people, 'label_column = "kind"\nfeatures = ["city"]\n' + NO_VALIDATION)


@effect("data.missing (csv)")
def test_missing_refuses_or_fills_from_the_training_split(people):
    base = 'label_column = "kind"\nfeatures = ["age"]\n[data.preprocess]\nscale = "none"\n'
    with pytest.raises(MlpspecError, match=r"line 3, column 2 \('age'\): missing value.*data.missing"):
        tabular_prepared(people, base + NO_VALIDATION)
    fills = {}
    for policy in ("mean", "median", "most_frequent"):
        data = tabular_prepared(people, f'missing = "{policy}"\n' + base + NO_VALIDATION)
        fills[policy] = float(data.x_train[1, 0])
        assert data.encoder.features[0].fill == fills[policy]
    assert fills == {"mean": 37.5, "median": 35.0, "most_frequent": 20.0}
    # Fitted without the validation rows (the first two, 20 and empty, leave 40, 60, 30).
    held = tabular_prepared(people, 'missing = "mean"\n' + base + '[data.validation]\n'
                            'take_from = "train"\nsize = 2\nshuffle = false\n')
    assert held.encoder.features[0].fill == pytest.approx(130 / 3)


@effect("data.preprocess.target_scale")
def test_target_scale_standardizes_regression_targets_on_the_training_split(people):
    base = ('label_column = "income"\nfeatures = ["age"]\nmissing = "mean"\n'
            '[data.preprocess]\nscale = "none"\n')
    standardized = tabular_prepared(people, base + NO_VALIDATION, task="regression")
    y = np.array([[10.0], [30.0], [20.0], [50.0], [40.0]])
    np.testing.assert_array_equal(standardized.y_train, y)
    assert standardized.task == "regression" and standardized.target_names == ("income",)
    assert standardized.classes == 0 and standardized.class_names == ()
    np.testing.assert_allclose(standardized.target_scaling.offset, [30.0])
    np.testing.assert_allclose(standardized.target_scaling.scale, [y.std()])
    np.testing.assert_allclose(standardized.t_train, (y - 30.0) / y.std())
    np.testing.assert_array_equal(standardized.y_test, [[15.0], [45.0]])  # raw, never scaled
    raw = tabular_prepared(people, base.replace('scale = "none"', 'scale = "none"\ntarget_scale = "none"')
                           + NO_VALIDATION, task="regression")
    np.testing.assert_array_equal(raw.t_train, y)
    assert raw.target_scaling.kind == "none"


@effect("data.targets (csv)")
def test_targets_names_the_regression_target_columns(people):
    base = ('targets = ["income", "id"]\nmissing = "mean"\nexclude = ["kind"]\n'
            'categorical = ["city"]\nunseen = "ignore"\n'
            '[data.preprocess]\nscale = "none"\ntarget_scale = "none"\n' + NO_VALIDATION)
    data = tabular_prepared(people, base, task="regression")
    assert data.target_names == ("income", "id")
    np.testing.assert_array_equal(data.y_test, [[15, 6], [45, 7]])
    np.testing.assert_array_equal(data.t_train[:, 1], [1, 2, 3, 4, 5])
    # Targets are no features: age and the city's one-hot inputs are.
    assert data.encoder.input_names() == ["age", "city=oslo", "city=paris", "city=rome"]
    with pytest.raises(MlpspecError, match=r"data.targets names regression targets"):
        tabular_prepared(people, base)
    with pytest.raises(MlpspecError, match=r"line 3, column 2 \('age'\): missing target ''"):
        tabular_prepared(people, base.replace('"id"]', '"age"]'), task="regression")


def test_momentum_through_fit_stays_textbook_momentum_across_renormalisations():
    """momentum.v1 keeps its velocity scaled by the momenta since the last renormalisation
    (at mu = 0.6 every 28th step): 60 steps through `fit` land on textbook momentum's weights."""
    spec = linear("train.epochs=60", "train.batch_size=12",
                  'train.optimizer={type="momentum.v1", learning_rate=0.2, momentum=0.6}')
    data = table()
    _, W, b = trained(spec, data)
    W_hand, b_hand = hand_steps(spec, data, 60, momentum_update(0.2, 0.6))
    np.testing.assert_allclose(W, W_hand, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(b, b_hand, rtol=1e-10, atol=1e-13)
