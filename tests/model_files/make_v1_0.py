"""How `v1.0.mlpm` was made (run once, when format 1.0 was released; never rerun
to "update" it: the file must keep loading as it is, forever).

    python tests/model_files/make_v1_0.py

A 4x4-pixel, 3-class network with every layer kind of format 1.0, weights from
the seeded initialisers and hand-set batchnorm statistics (no training, so
nothing depends on the BLAS). Prints the pinned outputs used by
tests/test_model_format.py.

It ran with the format 1.0 writer. Since format 1.1, `model_to_bytes` writes
1.1 files and needs the input contract (`raw_input=`), so this script no
longer runs as it stands: it records how the file was made, and the file
itself is the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpspec import infer
from mlpspec.data.prepare import Scaling
from mlpspec.export import model_to_bytes, write_model
from mlpspec.spec import parse_spec
from mlpspec.train import build_network

SPEC = """
spec_version = 1
name = "fixture-v1.0"
seed = 10
[data]
source = "npz"
train = "train.npz"
test = "test.npz"
classes = 3
[network]
inputs = 16
[[network.layers]]
type = "dense.v1"
units = 6
[[network.layers]]
type = "batchnorm.v1"
[[network.layers]]
type = "relu.v1"
[[network.layers]]
type = "dense.v1"
units = 5
init = "glorot_uniform"
[[network.layers]]
type = "leaky_relu.v1"
alpha = 0.2
[[network.layers]]
type = "dropout.v1"
rate = 0.25
[[network.layers]]
type = "dense.v1"
units = 5
[[network.layers]]
type = "gelu.v1"
[[network.layers]]
type = "dense.v1"
units = 4
[[network.layers]]
type = "sigmoid.v1"
[[network.layers]]
type = "dense.v1"
units = 4
[[network.layers]]
type = "tanh.v1"
[[network.layers]]
type = "dense.v1"
units = 3
[train]
epochs = 1
"""

#: Raw 4x4 uint8 samples the pinned outputs are computed for.
PINNED_INPUTS = np.arange(2 * 16, dtype=np.uint8).reshape(2, 4, 4) * 7


def build() -> bytes:
    spec = parse_spec(SPEC, "fixture-v1.0.toml")
    network = build_network(spec)
    state = network.state_dict()
    state["layers.0.b"] = np.linspace(-0.5, 0.5, 6, dtype=np.float32)
    state["layers.1.gamma"] = np.linspace(0.5, 1.5, 6, dtype=np.float32)
    state["layers.1.beta"] = np.linspace(-0.2, 0.3, 6, dtype=np.float32)
    state["layers.1.running_mean"] = np.linspace(-1.0, 1.0, 6, dtype=np.float32)
    state["layers.1.running_var"] = np.linspace(0.5, 2.0, 6, dtype=np.float32)
    network.load_state_dict(state)
    return model_to_bytes(
        network, spec, scaling=Scaling("unit", np.array(0.0), np.array(255.0)), sample_shape=(4, 4),
        class_names=("circle", "square", "triangle"),
        metrics={"accuracy": 0.875, "loss": 0.3125, "samples": 8,
                 "confusion_matrix": [[3, 0, 0], [1, 2, 0], [0, 0, 2]]},
        checksums={"test.npz": "0" * 64, "train.npz": "f" * 64}, cache_key="ab" * 32)


if __name__ == "__main__":
    path = write_model(Path(__file__).with_name("v1.0.mlpm"), build())
    model = infer.load(path)
    np.set_printoptions(precision=9)
    print(path, path.stat().st_size, "bytes")
    print(repr(model.logits(PINNED_INPUTS).tolist()))
