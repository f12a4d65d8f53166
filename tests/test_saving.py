"""Types that save and load themselves: what comes back is what went in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlpspec.checkpoint import Checkpoint, EpochRecord
from mlpspec.data.load import RawDataset
from mlpspec.data.prepare import Prepared, prepare
from mlpspec.spec import parse_spec

from test_spec import MINIMAL


def prepared(*overrides: str) -> Prepared:
    rng = np.random.default_rng(0)
    raw = RawDataset("t", rng.integers(0, 255, (40, 4, 4)).astype(np.uint8), rng.integers(0, 10, 40),
                     rng.integers(0, 255, (20, 4, 4)).astype(np.uint8), rng.integers(0, 10, 20), 10,
                     tuple("0123456789"), {"train.npz": "ab" * 32})
    spec = parse_spec(MINIMAL, "s.toml", ['data.validation.take_from="train"',
                                          "data.validation.size=8", *overrides])
    return prepare(raw, spec.data, seed=0, dtype="float32")


def same(a: Prepared, b: Prepared) -> None:
    for name in ("x_train", "y_train", "t_train", "x_val", "y_val", "x_test", "y_test"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    assert (a.classes, a.class_names, a.sample_shape, a.name, dict(a.checksums)) == (
        b.classes, b.class_names, b.sample_shape, b.name, dict(b.checksums))
    assert a.scaling.kind == b.scaling.kind
    np.testing.assert_array_equal(a.scaling.offset, b.scaling.offset)
    np.testing.assert_array_equal(a.scaling.scale, b.scaling.scale)
    assert a.raw_input.to_meta() == b.raw_input.to_meta()


@pytest.mark.parametrize("overrides", [(), ('data.preprocess.scale="standardize"',),
                                       ("data.preprocess.one_hot=false",)])
@pytest.mark.parametrize("mmap", [False, True])
def test_prepared_round_trips_through_a_folder(tmp_path, overrides, mmap):
    data = prepared(*overrides)
    data.save(tmp_path)
    same(Prepared.load(tmp_path, mmap=mmap), data)


def test_prepared_keeps_the_preprocess_entry_layout(tmp_path):
    """The preprocess entry's layout (stage version 2: version 1 had no `raw_input`)."""
    prepared().save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "meta.json", "scaling_offset.npy", "scaling_scale.npy", "x_test.npy", "x_train.npy",
        "x_val.npy", "y_test.npy", "y_train.npy", "y_val.npy"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    raw_input = meta.pop("raw_input")
    assert meta == {"name": "t", "classes": 10, "class_names": list("0123456789"),
                    "sample_shape": [4, 4], "scaling": "unit", "one_hot": True,
                    "checksums": {"train.npz": "ab" * 32}, "encoder": None,
                    "task": "classification", "target_names": [], "target_scaling": None}
    assert set(raw_input) == {"dtype", "whole", "min", "max"} and len(raw_input["min"]) == 16


def test_checkpoint_round_trips_through_a_folder(tmp_path):
    history = [EpochRecord(1, 0.5, 0.8, float("nan"), float("nan"), 0.1, 2.0)]
    checkpoint = Checkpoint(1, 7, history, {"0.W": np.arange(6.0).reshape(2, 3)},
                            {"0.W.m": np.ones((2, 3), np.float32)},
                            np.random.default_rng(1).bit_generator.state,
                            [np.random.default_rng(2).bit_generator.state], 0.75, 1,
                            {"0.W": np.zeros((2, 3))}, 0, 3.5, {"0.W": np.full((2, 3), 9.0)})
    checkpoint.save(tmp_path / "key")
    loaded = Checkpoint.load(tmp_path / "key")
    assert (loaded.epoch, loaded.step, loaded.best_score, loaded.best_epoch, loaded.waited,
            loaded.seconds) == (1, 7, 0.75, 1, 0, 3.5)
    assert loaded.shuffle_rng == checkpoint.shuffle_rng
    assert loaded.dropout_rngs == checkpoint.dropout_rngs
    assert np.isnan(loaded.history[0].val_loss) and loaded.history[0].train_loss == 0.5
    for group in ("network", "optimizer", "best_network", "averaged"):
        for name, array in getattr(checkpoint, group).items():
            got = getattr(loaded, group)[name]
            assert got.dtype == array.dtype and np.array_equal(got, array), (group, name)


def test_a_damaged_checkpoint_loads_as_none_and_is_removed(tmp_path):
    folder = tmp_path / "key"
    Checkpoint(1, 1, [], {}, {}, {}, [], 0.0, 0, None, 0, 0.0).save(folder)
    (folder / "state.json").write_text("{not json")
    assert Checkpoint.load(folder) is None
    assert not folder.exists()
    assert Checkpoint.load(folder) is None


def test_raw_dataset_round_trips_and_keeps_the_load_entry_layout(tmp_path):
    rng = np.random.default_rng(0)
    raw = RawDataset("t", rng.integers(0, 255, (5, 3, 2)).astype(np.uint8), np.arange(5) % 3,
                     rng.integers(0, 255, (4, 3, 2)).astype(np.uint8), np.arange(4) % 3, 3,
                     ("a", "b", "c"), {"train.npz": "cd" * 32})
    raw.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "meta.json", "x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]
    loaded = RawDataset.load(tmp_path)
    assert loaded.describe() == raw.describe()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(loaded, name), getattr(raw, name))
        assert getattr(loaded, name).dtype == getattr(raw, name).dtype
