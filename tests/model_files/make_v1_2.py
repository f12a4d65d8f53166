"""How `v1.2.mlpm` was made (run once, when format 1.2 was released; never rerun
to "update" it: the file must keep loading as it is, forever).

    python tests/model_files/make_v1_2.py

Format 1.2 adds `task` and `targets`. This file is the case 1.1 files did not
cover: a regression model (`task = "regression"`, loss huber.v1) with two
targets on very different scales, de-standardised from the network's
outputs; float64 tabular rows (5 features, `standardize` scaling); weights
from the seeded initialisers (no training, so nothing depends on the BLAS).
Prints the pinned outputs used by tests/test_model_format.py.
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
name = "fixture-v1.2"
seed = 12
task = "regression"
[data]
source = "npz"
train = "train.npz"
test = "test.npz"
[data.preprocess]
scale = "standardize"
[network]
inputs = 5
[[network.layers]]
type = "dense.v1"
units = 6
init = "glorot_uniform"
[[network.layers]]
type = "gelu.v1"
[[network.layers]]
type = "dense.v1"
units = 2
init = "glorot_uniform"
[train]
epochs = 1
loss = {type = "huber.v1", delta = 1.5}
"""

MEAN = np.array([0.0, 48.5, 1.25, -3.0, 0.5])
STD = np.array([1.0, 12.0, 0.25, 2.5, 0.125])
MINIMUM = np.array([-2.5, 10.0, 0.5, -9.0, 0.125])
MAXIMUM = np.array([2.75, 90.0, 2.0, 4.0, 0.875])
#: The targets' training mean and std: what `predict` multiplies and adds back.
TARGET_MEAN = np.array([152.25, -0.75])
TARGET_STD = np.array([77.5, 0.0625])

#: Raw float64 rows the pinned outputs are computed for.
PINNED_INPUTS = np.array([[0.5, 40.0, 1.0, -2.0, 0.25],
                          [-1.25, 72.0, 1.75, 1.5, 0.75]])


def build() -> bytes:
    spec = parse_spec(SPEC, "fixture-v1.2.toml")
    network = build_network(spec)
    state = network.state_dict()
    state["layers.0.b"] = np.linspace(-0.5, 0.5, 6, dtype=np.float32)
    state["layers.2.b"] = np.array([0.25, -0.125], dtype=np.float32)
    network.load_state_dict(state)
    return model_to_bytes(
        network, spec, scaling=Scaling("standardize", MEAN, STD),
        raw_input=RawInput("float64", False, MINIMUM, MAXIMUM), sample_shape=(5,),
        class_names=(),
        targets={"names": ["progression", "ratio"],
                 "scaling": Scaling("standardize", TARGET_MEAN, TARGET_STD)},
        metrics={"test": {"rmse": 55.5, "mae": 44.25, "r2": 0.5, "loss": 0.375, "samples": 89}},
        checksums={"test": "2" * 64, "train": "f" * 64}, cache_key="ef" * 32)


if __name__ == "__main__":
    path = write_model(Path(__file__).with_name("v1.2.mlpm"), build())
    model = infer.load(path)
    np.set_printoptions(precision=17)
    print(path, path.stat().st_size, "bytes", __import__("hashlib").sha256(path.read_bytes()).hexdigest())
    print(repr(model.logits(PINNED_INPUTS).tolist()))
    print(repr(model.predict(PINNED_INPUTS).tolist()))
