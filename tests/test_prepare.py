"""Preprocessing: validation splits, scaling fitted on training data only, one-hot."""

from __future__ import annotations

import numpy as np
import pytest

from mlpspec.data.load import RawDataset
from mlpspec.data.prepare import fit_scaling, one_hot, prepare, split_indices
from mlpspec.errors import DataError
from mlpspec.spec import parse_spec

from test_spec import MINIMAL


def generator(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_split_takes_a_count_or_a_fraction_and_keeps_file_order():
    labels = np.arange(100) % 4
    keep, held = split_indices(labels, 10, stratify=False, shuffle=True, generator=generator(), what="x")
    assert len(held) == 10 and len(keep) == 90
    assert np.all(np.diff(held) > 0) and np.all(np.diff(keep) > 0)
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    _, held = split_indices(labels, 0.25, stratify=False, shuffle=True, generator=generator(), what="x")
    assert len(held) == 25


def test_split_without_shuffle_takes_the_first_samples():
    keep, held = split_indices(np.zeros(10, int), 3, stratify=False, shuffle=False,
                               generator=generator(), what="x")
    assert held.tolist() == [0, 1, 2] and keep.tolist() == list(range(3, 10))


def test_stratified_split_keeps_class_shares():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    _, held = split_indices(labels, 20, stratify=True, shuffle=True, generator=generator(), what="x")
    assert np.bincount(labels[held]).tolist() == [16, 3, 1]


def test_split_is_reproducible_from_the_generator():
    labels = np.arange(1000) % 10
    first = split_indices(labels, 100, stratify=True, shuffle=True, generator=generator(7), what="x")
    second = split_indices(labels, 100, stratify=True, shuffle=True, generator=generator(7), what="x")
    other = split_indices(labels, 100, stratify=True, shuffle=True, generator=generator(8), what="x")
    assert np.array_equal(first[1], second[1]) and not np.array_equal(first[1], other[1])


def test_split_that_leaves_nothing_is_an_error():
    with pytest.raises(DataError, match=r"data.validation.size: expected between 1 and 9 samples, "
                                        r"found 10 \(10 of 10\)"):
        split_indices(np.zeros(10, int), 10, stratify=False, shuffle=True, generator=generator(),
                      what="data.validation.size")


def test_standardize_is_fitted_on_the_training_split_only():
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 255, (200, 4, 4)).astype(np.uint8)
    x_train[:, 0, 0] = 7  # a constant pixel: scale 1, not a division by zero
    raw = RawDataset("t", x_train, rng.integers(0, 10, 200), np.full((50, 4, 4), 255, np.uint8),
                     rng.integers(0, 10, 50), 10, tuple("0123456789"), {})
    spec = parse_spec(MINIMAL, "s.toml", ['data.preprocess.scale="standardize"',
                                          'data.validation.take_from="train"',
                                          "data.validation.size=50"])
    data = prepare(raw, spec.data, seed=0, dtype="float32")
    assert data.x_train.dtype == np.float32 and data.x_train.shape == (150, 16)
    assert np.allclose(data.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(data.x_train.std(axis=0)[1:], 1, atol=1e-4)
    assert data.scaling.scale[0] == 1.0
    # Statistics come from the 150 remaining training samples, not validation or test.
    assert data.scaling.offset.shape == (16,)
    assert not np.allclose(data.scaling.offset, x_train.reshape(200, 16).mean(axis=0))
    assert len(data.x_val) == 50 and len(data.x_test) == 50
    assert not np.allclose(data.x_test, 0)


def test_unit_scaling_and_one_hot():
    scaling = fit_scaling("unit", np.zeros((3, 2)))
    assert scaling.apply(np.array([[0, 255]], np.uint8), np.float32).tolist() == [[0.0, 1.0]]
    assert one_hot(np.array([2, 0]), 3, np.float32).tolist() == [[0, 0, 1], [1, 0, 0]]
    # Through `prepare`, as the pipeline calls it: the spec keys pick the encoding.
    rng = np.random.default_rng(1)
    raw = RawDataset("t", rng.integers(0, 256, (20, 2, 2)).astype(np.uint8), np.arange(20) % 10,
                     rng.integers(0, 256, (10, 2, 2)).astype(np.uint8), np.arange(10), 10,
                     tuple("0123456789"), {})
    for encode in (True, False):
        spec = parse_spec(MINIMAL, "s.toml", ['data.preprocess.scale="unit"',
                                              f"data.preprocess.one_hot={str(encode).lower()}",
                                              "data.validation.take_from=\"test\"",
                                              "data.validation.size=4"])
        data = prepare(raw, spec.data, seed=0, dtype="float32")
        np.testing.assert_allclose(data.x_train, raw.x_train.reshape(20, 4) / 255, rtol=1e-6)
        if encode:
            assert data.t_train.shape == (20, 10) and data.t_train.dtype == np.float32
            assert data.t_train.argmax(axis=1).tolist() == raw.y_train.tolist()
            assert data.t_train.sum(axis=1).tolist() == [1.0] * 20
        else:
            assert data.t_train.tolist() == raw.y_train.tolist()
