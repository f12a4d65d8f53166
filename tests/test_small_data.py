"""Small datasets (issue 10): the default validation split works on a few hundred
samples, and `validate` refuses, with the fix, what `run` would refuse before training.

Through the CLI, as a user meets it: `mlpspec validate` and `mlpspec run`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mlpspec.data.idx import encode_idx

from conftest import invoke


LAYERS = '[[network.layers]]\ntype = "dense.v1"\nunits = 3\n[train]\nepochs = 10\nbatch_size = 32\n' \
         '[train.optimizer]\ntype = "adam.v1"\nlearning_rate = 0.01\n'




def blobs(n: int, seed: int, features: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """`n` samples of 3 separable classes (shares 50/30/20 %)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    x = rng.normal(size=(n, features)) + 3.0 * y[:, None]
    return x, y


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """300 training and 100 test samples as npz and CSV (label first), and IDX."""
    for name, n, seed in (("train", 300, 0), ("test", 100, 1)):
        x, y = blobs(n, seed)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        np.savetxt(tmp_path / f"{name}.csv", np.column_stack([y, x]), delimiter=",", fmt="%.6g")
        pixels = (np.clip(x, -4, 12) * 15 + 60).astype(np.uint8).reshape(n, 2, 4)
        (tmp_path / f"{name}-images.gz").write_bytes(gzip.compress(encode_idx(pixels)))
        (tmp_path / f"{name}-labels.gz").write_bytes(gzip.compress(encode_idx(y.astype(np.uint8))))
    return tmp_path


def write_spec(folder: Path, source: str, inputs: int = 8, data: str = "") -> Path:
    files = {
        "npz": 'source = "npz"\ntrain = "train.npz"\ntest = "test.npz"\nclasses = 3\n',
        "csv": 'source = "csv"\ntrain = "train.csv"\ntest = "test.csv"\nclasses = 3\n',
        "idx": 'source = "idx"\ntrain_images = "train-images.gz"\ntrain_labels = "train-labels.gz"\n'
               'test_images = "test-images.gz"\ntest_labels = "test-labels.gz"\nclasses = 3\n',
    }[source]
    path = folder / f"{source}.toml"
    path.write_text(f'spec_version = 1\nname = "small-{source}"\n[data]\n{files}'
                    f'[data.preprocess]\nscale = "standardize"\n{data}'
                    f"[network]\ninputs = {inputs}\n{LAYERS}")
    return path


def test_default_validation_trains_on_300_samples(small):
    spec = write_spec(small, "npz")
    assert invoke("validate", spec).exit_code == 0
    result = invoke("run", spec, "--json", "--out", small / "run", "--cache-dir", small / "cache")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # 10 % of the 300 training samples, stratified; the 100 test samples all scored.
    assert summary["validation"]["samples"] == 30
    assert summary["test"]["samples"] == 100
    assert summary["test"]["accuracy"] > 0.9
    resolved = (small / "run" / "spec.resolved.toml").read_text()
    assert 'take_from = "train"\nsize = 0.1\nstratify = true' in resolved


@pytest.mark.parametrize("source,features", [("npz", 8), ("csv", 8), ("idx", 8)])
def test_validate_refuses_inputs_that_do_not_match_the_files(small, source, features):
    spec = write_spec(small, source, inputs=784)
    result = invoke("validate", spec)
    assert result.exit_code == 2
    shape = "8 features" if source != "idx" else "shape 2x4, 8 features once flattened"
    assert result.stderr == (f"error: the spec has 1 problem:\n  {spec}: network.inputs: expected "
                             f"{features} (the samples of data.train have {shape}), found 784; "
                             f"set network.inputs = {features}\n")
    # run refuses identically, before any stage (nothing is cached).
    run = invoke("run", spec, "--cache-dir", small / "cache", "--out", small / "run")
    assert run.exit_code == 2 and run.stderr == result.stderr
    assert not (small / "cache").exists()


@pytest.mark.parametrize("setting,pool,message", [
    ("size = 300", "data.train (train.npz)",
     "expected fewer than the 300 samples of data.train (train.npz) (some must remain), found "
     "300; set data.validation.size to a smaller count such as 30 or a fraction such as 0.1"),
    ('take_from = "test"\nsize = 5000', "data.test (test.npz)",
     "expected fewer than the 100 samples of data.test (test.npz) (some must remain), found "
     "5000; set data.validation.size to a smaller count such as 10 or a fraction such as 0.1, "
     'or data.validation.take_from = "train"'),
    ("size = 0.001", "data.train (train.npz)",
     "expected a fraction that holds out between 1 and 299 of the 300 samples of data.train "
     "(train.npz), found 0.001 (0 samples); set data.validation.size to a fraction such as 0.1 "
     "or a count such as 30"),
])
def test_validate_refuses_a_validation_split_too_large_for_the_files(small, setting, pool, message):
    spec = write_spec(small, "npz", data=f"[data.validation]\n{setting}\n")
    result = invoke("validate", spec)
    assert result.exit_code == 2
    assert result.stderr == f"error: the spec has 1 problem:\n  {spec}: data.validation.size: {message}\n"


def test_validate_reports_every_data_problem_with_its_key(small):
    x, y = blobs(40, 2)
    y[5] = 4  # a label beyond data.classes = 3
    np.savez(small / "test.npz", x=x[:, :6], y=y)
    spec = write_spec(small, "npz")
    result = invoke("validate", spec)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "error: the spec has 2 problems:"
    assert lines[1] == (f"  {spec}: data.test: expected samples of shape 8 as in data.train, "
                        f"found 6; both files must hold the same kind of sample")
    assert lines[2] == (f"  {spec}: data.classes: expected more than the largest label of "
                        f"data.test (4), found 3; set data.classes = 5 and the last dense "
                        f"layer's units to 5")

    (small / "test.npz").unlink()
    result = invoke("validate", spec)
    assert result.stderr == (f"error: the spec has 1 problem:\n  {spec}: data.test: "
                             f"{small / 'test.npz'}: no such file; the path is taken from the "
                             f"spec's folder\n")


def test_csv_label_column_out_of_range(small):
    spec = write_spec(small, "csv")
    spec.write_text(spec.read_text().replace("classes = 3\n", "classes = 3\nlabel_column = 12\n"))
    result = invoke("validate", spec)
    assert result.exit_code == 2
    assert (f"data.label_column: expected a column of {small / 'train.csv'} (it has 9 columns: "
            f"0 to 8), found 12; set data.label_column to the label's column") in result.stderr


def test_float_targets_are_not_stratified():
    """The default `stratify = true` applies to class labels only: float targets (regression)
    are held out at random, not by distinct value (which would take the smallest ones)."""
    from mlpspec.data.load import RawDataset
    from mlpspec.data.prepare import split_validation
    from mlpspec.spec.model import ValidationSpec

    targets = np.linspace(0.0, 1.0, 200)
    raw = RawDataset("r", np.zeros((200, 2)), targets, np.zeros((10, 2)), np.zeros(10), 2,
                     ("a", "b"), {})
    held = split_validation(raw, ValidationSpec(), seed=0)[3]
    assert len(held) == 20 and held.max() > 0.5  # not the 20 smallest


def test_validate_reads_a_csv_as_the_loader_does(tmp_path):
    """A blank first line and a header: validate counted the header as a sample and, its
    label cell not being a number, skipped the label check; now it reads the file with the
    loader's reader and refuses the label 7 for classes = 2, as run would."""
    lines = ["", "a,b,label", "1,2,0", "3,4,1", "5,6,7", "7,8,1"]
    for name in ("train.csv", "test.csv"):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    spec = tmp_path / "s.toml"
    spec.write_text('spec_version = 1\nname = "s"\n[data]\nsource = "csv"\ntrain = "train.csv"\n'
                    'test = "test.csv"\nheader = true\nlabel_column = 2\nclasses = 2\n'
                    '[data.validation]\ntake_from = "none"\n[network]\ninputs = 2\n'
                    '[[network.layers]]\ntype = "dense.v1"\nunits = 2\n[train]\nepochs = 1\n')
    result = invoke("validate", spec)
    assert result.exit_code == 2, result.output
    assert "data.classes: expected more than the largest label of data.train (7)" in result.output
