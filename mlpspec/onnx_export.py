"""Model file -> ONNX graph (needs the `onnx` extra: `pip install 'mlpspec[onnx]'`).

    data = to_onnx(infer.load("model.mlpm"))

The graph takes preprocessed features, float32 `input` of shape
`(N, inputs)` (the stored scaling is not part of the graph; it is recorded
in the metadata as `mlpspec.scaling`), and returns float32 `logits`
`(N, classes)` plus, for a softmax model, `probabilities` (Softmax on axis 1).
A float64 model is exported in float32.

Each layer becomes nodes through the builder its `mlpspec.registry` entry
names (the functions below): dense -> Gemm, relu -> Relu, leaky_relu ->
LeakyRelu, sigmoid -> Sigmoid, tanh -> Tanh, gelu -> Gelu with
approximate="tanh" (opset 20; the trainer's GELU is the tanh approximation),
batchnorm -> BatchNormalization in inference mode, dropout -> nothing (the
identity at inference).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from mlpspec import __version__
from mlpspec.infer import Model

OPSET = 20  # the first opset with Gelu


class LayerNodes:
    """What one layer's node builder works with: its settings, and adders for its
    constants and nodes, named after the layer (`layers.3.W`, `layers.3.gelu`)."""

    def __init__(self, index: int, layer: dict[str, Any], model: Model,
                 constant: Callable[[str, np.ndarray], str], node: Callable[..., str]):
        self.index, self.settings = index, layer["settings"]
        self.name = f"layers.{index}.{layer['type'].split('.')[0]}"
        self._model, self._constant, self._node = model, constant, node

    def tensor(self, key: str) -> str:
        """The layer's stored tensor `key` as an initializer; returns its name."""
        name = f"layers.{self.index}.{key}"
        return self._constant(name, self._model.tensors[name])

    def node(self, op: str, inputs: list[str], **attributes) -> str:
        """Add the layer's node; returns the name of its output."""
        return self._node(op, inputs, self.name, **attributes)


# Node builders, `(layer, X) -> name of the output`, referenced by mlpspec.registry.

def gemm(layer: LayerNodes, X: str) -> str:
    return layer.node("Gemm", [X, layer.tensor("W"), layer.tensor("b")])


def batch_normalization(layer: LayerNodes, X: str) -> str:
    statistics = [layer.tensor(key) for key in ("gamma", "beta", "running_mean", "running_var")]
    return layer.node("BatchNormalization", [X, *statistics], epsilon=float(layer.settings["epsilon"]))


def leaky_relu(layer: LayerNodes, X: str) -> str:
    return layer.node("LeakyRelu", [X], alpha=float(layer.settings["alpha"]))


def gelu(layer: LayerNodes, X: str) -> str:
    return layer.node("Gelu", [X], approximate="tanh")


def _unary(op: str) -> Callable[[LayerNodes, str], str]:
    def build(layer: LayerNodes, X: str) -> str:
        return layer.node(op, [X])
    return build


relu, sigmoid, tanh = _unary("Relu"), _unary("Sigmoid"), _unary("Tanh")


def identity(layer: LayerNodes, X: str) -> str:
    return X


def to_onnx(model: Model) -> bytes:
    """The serialized ONNX ModelProto for `model`, checked by `onnx.checker`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    current = "input"

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    from mlpspec.registry import LAYERS  # the registry refers to this module's builders

    for i, layer in enumerate(model.layers):
        entry = LAYERS.get(layer["type"])
        if entry is None:  # the reader knows a type this mlpspec does not
            raise ValueError(f"layer {i}: no ONNX mapping for {layer['type']}")
        current = entry.onnx(LayerNodes(i, layer, model, constant, node), current)
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", model.outputs])]
    node("Identity", [current], "logits")
    if model.output == "softmax":
        node("Softmax", ["logits"], "probabilities", axis=1)
        outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                     ["N", model.outputs]))
    graph = helper.make_graph(
        nodes, "mlpspec",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", model.inputs])],
        outputs, initializers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="mlpspec", producer_version=__version__)
    onnx_model.ir_version = 9  # understood by onnxruntime >= 1.16
    scaling = model.scaling
    helper.set_model_props(onnx_model, {
        "mlpspec.classes": json.dumps(list(model.classes)),
        "mlpspec.sample_shape": json.dumps(list(model.sample_shape)),
        "mlpspec.scaling": json.dumps({"kind": scaling["kind"],
                                       "offset": scaling["offset"].tolist(),
                                       "scale": scaling["scale"].tolist()}),
        "mlpspec.format_version": ".".join(map(str, model.format_version)),
    })
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model.SerializeToString()
