"""How `v1.1.mlpm` was made (run once, when format 1.1 was released; never rerun
to "update" it: the file must keep loading as it is, forever).

    python tests/model_files/make_v1_1.py

Format 1.1 adds `preprocessing.input`, the input contract. This file is the
case 1.0 files did not cover: tabular float64 rows (6 features on very
different scales) with `standardize` scaling, 3 classes; weights from the
seeded initialisers (no training, so nothing depends on the BLAS). Prints the
pinned outputs used by tests/test_model_format.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpspec import infer
from mlpspec.data.prepare import RawInput, Scaling
from mlpspec.export import model_to_bytes, write_model
from mlpspec.spec import parse_spec
from mlpspec.train import build_network

SPEC = """
spec_version = 1
name = "fixture-v1.1"
seed = 11
[data]
source = "csv"
train = "train.csv"
test = "test.csv"
classes = 3
[data.preprocess]
scale = "standardize"
[network]
inputs = 6
[[network.layers]]
type = "dense.v1"
units = 5
init = "glorot_uniform"
[[network.layers]]
type = "tanh.v1"
[[network.layers]]
type = "dense.v1"
units = 3
init = "glorot_uniform"
[train]
epochs = 1
"""

#: Per-feature training mean and std (the standardize scaling) and range (the contract).
MEAN = np.array([13.0, 2.25, 100.0, 0.36, 750.0, -4.5])
STD = np.array([0.8, 1.1, 14.0, 0.125, 315.0, 2.0])
MINIMUM = np.array([11.0, 0.75, 70.0, 0.125, 278.0, -10.0])
MAXIMUM = np.array([14.75, 5.75, 162.0, 0.625, 1680.0, 0.5])

#: Raw float64 rows the pinned outputs are computed for.
PINNED_INPUTS = np.array([[12.5, 1.5, 95.0, 0.25, 500.0, -6.0],
                          [14.0, 4.0, 130.0, 0.5, 1200.0, -1.0]])


def build() -> bytes:
    spec = parse_spec(SPEC, "fixture-v1.1.toml")
    network = build_network(spec)
    state = network.state_dict()
    state["layers.0.b"] = np.linspace(-0.25, 0.25, 5, dtype=np.float32)
    state["layers.2.b"] = np.array([0.125, -0.125, 0.0], dtype=np.float32)
    network.load_state_dict(state)
    return model_to_bytes(
        network, spec, scaling=Scaling("standardize", MEAN, STD),
        raw_input=RawInput("float64", False, MINIMUM, MAXIMUM), sample_shape=(6,),
        class_names=("class_0", "class_1", "class_2"),
        metrics={"accuracy": 0.9375, "loss": 0.25, "samples": 16},
        checksums={"test": "1" * 64, "train": "e" * 64}, cache_key="cd" * 32)


if __name__ == "__main__":
    path = write_model(Path(__file__).with_name("v1.1.mlpm"), build())
    model = infer.load(path)
    np.set_printoptions(precision=9)
    print(path, path.stat().st_size, "bytes")
    print(repr(model.logits(PINNED_INPUTS).tolist()))
