"""Loaders: real MNIST end to end, IDX/npz/csv happy paths, every bad-input error."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from conftest_data import cache_home, mnist_dir, requires_mnist  # noqa: F401  (fixtures)

from mlpspec.data import sources
from mlpspec.data.idx import encode_idx
from mlpspec.data.load import RawDataset, load_builtin, load_csv, load_idx, load_npz
from mlpspec.errors import DataError

RNG_SEED = 7


def _arrays(n_train=20, n_test=8, shape=(3, 2), classes=3):
    rng = np.random.default_rng(RNG_SEED)
    return (
        rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        rng.integers(0, classes, size=n_train).astype(np.uint8),
        rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        rng.integers(0, classes, size=n_test).astype(np.uint8),
    )


# --- real MNIST ---------------------------------------------------------------


@requires_mnist
def test_load_builtin_mnist_from_shared_mirror(cache_home, monkeypatch):
    monkeypatch.setenv("MLPSPEC_MIRRORS", str(mnist_dir()))
    first_log: list[str] = []
    second_log: list[str] = []
    first = load_builtin("mnist", log=first_log.append)
    second = load_builtin("mnist", log=second_log.append)
    # The first load fetches every file into the empty data home; the second
    # reads the verified copies and fetches nothing.
    assert sum(line.startswith("fetching ") for line in first_log) == 4
    assert second_log == []

    for data in (first, second):
        assert data.x_train.shape == (60000, 28, 28) and data.x_train.dtype == np.uint8
        assert data.x_test.shape == (10000, 28, 28) and data.x_test.dtype == np.uint8
        assert data.y_train.shape == (60000,) and data.y_train.dtype == np.int64
        assert data.y_test.shape == (10000,)
        assert set(np.unique(data.y_train)) == set(range(10)) == set(np.unique(data.y_test))
        assert dict(data.checksums) == {f.filename: f.sha256 for f in sources.MNIST.files.values()}
    assert np.array_equal(first.x_train, second.x_train)
    info = second.describe()
    assert json.loads(json.dumps(info)) == info
    features = info["train"].pop("features")
    assert info["train"] == {
        "samples": 60000,
        "shape": [28, 28],
        "dtype": "uint8",
        "class_counts": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    }
    # One entry per pixel: the corner is always blank, the centre spans 0..255.
    assert len(features) == 784 and features[0] == {"name": "0", "kind": "numeric", "missing": 0,
                                                    "min": 0.0, "max": 0.0, "mean": 0.0}
    assert features[14 * 28 + 14]["min"] == 0.0 and features[14 * 28 + 14]["max"] == 255.0
    assert info["test"]["samples"] == 10000 and sum(info["test"]["class_counts"]) == 10000
    assert info["checksums"] == dict(second.checksums)
    for remote in sources.MNIST.files.values():
        path = cache_home / "datasets" / "mnist" / remote.filename
        assert hashlib.sha256(path.read_bytes()).hexdigest() == remote.sha256
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        f.filename for f in sources.MNIST.files.values()
    )


@requires_mnist
def test_load_idx_reads_the_shared_gz_files():
    d = mnist_dir()
    images, labels = d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz"
    data = load_idx(images, labels, images, labels, classes=10, name="mnist-test")
    assert data.x_train.shape == (10000, 28, 28)
    assert data.checksums["test_images"] == sources.MNIST.files["test_images"].sha256


# --- IDX ----------------------------------------------------------------------


def _write_idx(tmp_path, arrays, compress=(False, True, False, True)):
    paths = []
    for k, (array, gz) in enumerate(zip(arrays, compress)):
        payload = encode_idx(array)
        path = tmp_path / f"f{k}"
        path.write_bytes(gzip.compress(payload) if gz else payload)
        paths.append(path)
    return paths


def test_load_idx_happy_path(tmp_path):
    arrays = _arrays()
    paths = _write_idx(tmp_path, arrays)
    data = load_idx(*paths, classes=3, class_names=["a", "b", "c"])
    assert isinstance(data, RawDataset)
    np.testing.assert_array_equal(data.x_train, arrays[0])
    np.testing.assert_array_equal(data.y_test, arrays[3])
    assert data.y_train.dtype == np.int64
    assert data.class_names == ("a", "b", "c")
    assert data.sample_shape == (3, 2)
    # Checksums are of the decompressed payloads, whatever the file held.
    assert data.checksums["train_labels"] == hashlib.sha256(encode_idx(arrays[1])).hexdigest()


def test_load_idx_length_mismatch(tmp_path):
    x, y, xt, yt = _arrays()
    paths = _write_idx(tmp_path, (x, y[:-1], xt, yt))
    with pytest.raises(DataError, match=f"{paths[1]}: 19 labels for 20 samples in {paths[0]}"):
        load_idx(*paths, classes=3)


def test_load_idx_label_out_of_range(tmp_path):
    x, y, xt, yt = _arrays()
    yt = yt.copy()
    yt[5] = 3
    paths = _write_idx(tmp_path, (x, y, xt, yt))
    with pytest.raises(DataError, match=rf"{paths[3]}: labels must be in \[0, 3\), found 3 at sample 5"):
        load_idx(*paths, classes=3)


def test_load_idx_sample_shape_mismatch(tmp_path):
    x, y, _, yt = _arrays()
    paths = _write_idx(tmp_path, (x, y, np.zeros((8, 2, 3), np.uint8), yt))
    with pytest.raises(DataError, match=rf"{paths[2]}: samples have shape \(2, 3\), but {paths[0]} has \(3, 2\)"):
        load_idx(*paths, classes=3)


def test_load_idx_empty(tmp_path):
    _, _, xt, yt = _arrays()
    paths = _write_idx(tmp_path, (np.zeros((0, 3, 2), np.uint8), np.zeros(0, np.uint8), xt, yt))
    with pytest.raises(DataError, match=f"{paths[0]}: contains no samples"):
        load_idx(*paths, classes=3)


def test_load_idx_bad_classes(tmp_path):
    paths = _write_idx(tmp_path, _arrays())
    with pytest.raises(DataError, match="classes must be an integer of at least 2, found 1"):
        load_idx(*paths, classes=1)
    with pytest.raises(DataError, match="3 classes but 2 class names"):
        load_idx(*paths, classes=3, class_names=["a", "b"])


# --- npz ----------------------------------------------------------------------


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_load_npz_happy_path(tmp_path):
    x, y, xt, yt = _arrays()
    train = _npz(tmp_path / "train.npz", x=x.astype(np.float32) / 255, y=y.astype(np.float64))
    test = _npz(tmp_path / "test.npz", x=xt.astype(np.float32) / 255, y=yt.astype(np.int32))
    data = load_npz(train, test, classes=3)
    assert data.name == "train"
    assert data.x_train.dtype == np.float32 and data.x_train.shape == (20, 3, 2)
    np.testing.assert_array_equal(data.y_train, y)
    assert data.y_train.dtype == data.y_test.dtype == np.int64
    assert data.checksums["train"] == hashlib.sha256(train.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "train_arrays, message",
    [
        (dict(x=np.zeros((4, 2)), z=np.zeros(4)), r"expected arrays x and y, missing y \(found x, z\)"),
        (dict(x=np.array([[1, None]], dtype=object), y=np.zeros(1)), "x: cannot be loaded without pickle"),
        (dict(x=np.array([["a", "b"]]), y=np.zeros(1)), "x: expected numeric features, found dtype <U1"),
        (dict(x=np.array([[1.0, np.nan], [0, 0]]), y=np.zeros(2)), r"x: expected finite values, found NaN or infinity in 1 samples \(first: sample 0\)"),
        (dict(x=np.zeros((3, 2)), y=np.array([0, 1.5, 2])), "y: labels must be integers, found 1.5 at sample 1"),
        (dict(x=np.zeros((3, 2)), y=np.array([0, -1, 2])), r"y: labels must be in \[0, 3\), found -1 at sample 1"),
        (dict(x=np.zeros((3, 2)), y=np.zeros((3, 1))), r"y: expected labels of shape \(n_samples,\), found \(3, 1\)"),
        (dict(x=np.zeros(3), y=np.zeros(3)), r"x: expected shape \(n_samples, \.\.\.features\), found \(3,\)"),
        (dict(x=np.zeros((3, 2)), y=np.array([True, False, True])), "y: labels must be integers, found dtype bool"),
    ],
)
def test_load_npz_errors(tmp_path, train_arrays, message):
    train = _npz(tmp_path / "train.npz", **train_arrays)
    test = _npz(tmp_path / "test.npz", x=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match=f"{train}: {message}"):
        load_npz(train, test, classes=3)


def test_load_npz_not_an_archive(tmp_path):
    good = _npz(tmp_path / "good.npz", x=np.zeros((2, 2)), y=np.zeros(2))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(DataError, match=f"{garbage}: not an .npz archive \\(expected a zip file, "
                                        f"found bytes b'not a zi'\\)"):
        load_npz(garbage, good, classes=2)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 and then nothing a zip needs")
    with pytest.raises(DataError, match=f"{broken}: not a readable .npz archive"):
        load_npz(broken, good, classes=2)
    with pytest.raises(DataError, match=f"{single}: expected an .npz archive with arrays x and y"):
        load_npz(good, single, classes=2)
    with pytest.raises(DataError, match="cannot read .npz file"):
        load_npz(good, tmp_path / "missing.npz", classes=2)


# --- CSV ----------------------------------------------------------------------


def _csv(path, text):
    path.write_text(text)
    return path


def test_load_csv_happy_path(tmp_path):
    train = _csv(tmp_path / "train.csv", "label,a,b\n1,0.5,2\n0,1,3\n\n2,4,5\n")
    test = _csv(tmp_path / "test.csv", "label,a,b\n2,7,8\n")
    data = load_csv(train, test, classes=3, header=True)
    assert data.x_train.tolist() == [[0.5, 2], [1, 3], [4, 5]]
    assert data.y_train.tolist() == [1, 0, 2] and data.y_test.tolist() == [2]


def test_load_csv_last_label_column(tmp_path):
    train = _csv(tmp_path / "train.csv", "0.5,2,1\n1,3,0\n")
    test = _csv(tmp_path / "test.csv", "7,8,1\n")
    data = load_csv(train, test, classes=2, label_column=-1)
    assert data.x_train.tolist() == [[0.5, 2], [1, 3]]
    assert data.y_train.tolist() == [1, 0]


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("1,2,3\n0,x7,1\n", {}, "line 2, column 2: expected a number, found 'x7'"),
        # An empty cell is a missing value, refused by default with the key that fills it.
        ("a,b,c\n1,2,3\n0,,1\n", {"header": True},
         r"line 3, column 2 \('b'\): missing value \(''\); set data.missing"),
        ("1,2,3\n0,1\n", {}, "line 2: expected 3 columns, found 2"),
        ("", {}, "contains no samples"),
        ("1\n0\n", {}, "expected a label column and at least one feature column, found 1 column"),
        ("1,2\n", {"label_column": 2}, "label_column 2 is out of range for 2 columns"),
        ("1,2\n7,2\n", {}, r"column 1 \(labels\): labels must be in \[0, 3\), found 7.0 at sample 1"),
        ("1,2\n0,inf\n", {}, "features: expected finite values"),
    ],
)
def test_load_csv_errors(tmp_path, text, kwargs, message):
    bad = _csv(tmp_path / "bad.csv", text)
    test = _csv(tmp_path / "test.csv", "0,1\n1,2\n")
    with pytest.raises(DataError, match=f"{bad}: {message}"):
        load_csv(bad, test, classes=3, **kwargs)


def test_load_csv_feature_count_mismatch(tmp_path):
    train = _csv(tmp_path / "train.csv", "1,2,3\n")
    test = _csv(tmp_path / "test.csv", "0,1\n")
    with pytest.raises(DataError, match=rf"{test}: features: samples have shape \(1,\), but {train}: features has \(2,\)"):
        load_csv(train, test, classes=3)

