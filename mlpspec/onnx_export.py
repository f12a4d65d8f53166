"""Model file -> ONNX graph (needs the `onnx` extra: `pip install 'mlpspec[onnx]'`).

    data = to_onnx(infer.load("model.mlpm"))

The graph takes RAW samples, like `infer.Model.predict`: float32 `input` of
shape `(N, *sample_shape)` (uint8 pixels given as float32, say), and applies
the stored scaling itself, as `infer.py` does: Reshape to `(N, inputs)` (for
samples of more than one dimension), Sub the offset, Div by the scale (each
left out when it changes nothing), then the layers. It returns float32
`logits` `(N, classes)` plus, for a softmax model, `probabilities` (Softmax
on axis 1). A float64 model is exported in float32. A regression model
(format 1.2) returns `logits` (the standardised outputs) and float64
`values` `(N, targets)` in the targets' own units: Cast to double, Mul by the
stored scale, Add the offset, the operations of infer.py's `predict`, so the
values agree with it bit for bit; `mlpspec.targets` records names and scaling.

A model trained on a CSV table (format 1.2, `preprocessing.columns`) takes
the ENCODED rows: its numeric columns and each categorical column's one-hot
inputs, in the model's input order (`infer.Model.encode(rows)` computes them),
not the strings of the table: one-hot encoding text is no simple ONNX graph.
Missing values are expressible: a NaN input (for a categorical column, NaN in
all its one-hot inputs) takes the stored fill value (IsNaN + Where) when the
model was trained with `missing` other than "error"; `mlpspec.columns` in the
metadata holds the whole column handling.

ONNX cannot refuse input: the input contract `infer.py` checks (raw dtype
and per-feature training range, format 1.1) is recorded in the metadata as
`mlpspec.input` for the calling program to check; `mlpspec.scaling` records
the scaling the graph applies.

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

    current = _scaling_nodes(model, current, node, constant, initializers)
    for i, layer in enumerate(model.layers):
        entry = LAYERS.get(layer["type"])
        if entry is None:  # the reader knows a type this mlpspec does not
            raise ValueError(f"layer {i}: no ONNX mapping for {layer['type']}")
        current = entry.onnx(LayerNodes(i, layer, model, constant, node), current)
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", model.outputs])]
    node("Identity", [current], "logits")
    if model.task == "regression":
        outputs.append(_values_nodes(model, node, initializers))
    elif model.output == "softmax":
        node("Softmax", ["logits"], "probabilities", axis=1)
        outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                     ["N", model.outputs]))
    graph = helper.make_graph(
        nodes, "mlpspec",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *model.sample_shape])],
        outputs, initializers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="mlpspec", producer_version=__version__)
    onnx_model.ir_version = 9  # understood by onnxruntime >= 1.16
    scaling, contract = model.scaling, model.input_contract
    helper.set_model_props(onnx_model, {
        "mlpspec.classes": json.dumps(list(model.classes)),
        "mlpspec.sample_shape": json.dumps(list(model.sample_shape)),
        "mlpspec.scaling": json.dumps({"kind": scaling["kind"],
                                       "offset": scaling["offset"].tolist(),
                                       "scale": scaling["scale"].tolist()}),
        "mlpspec.input": json.dumps(None if contract is None else {
            "dtype": contract["dtype"], "whole": contract["whole"], "min": contract["min"].tolist(),
            "max": contract["max"].tolist()}),
        "mlpspec.format_version": ".".join(map(str, model.format_version)),
        "mlpspec.task": model.task,
        "mlpspec.targets": json.dumps(None if model.target_scaling is None else {
            "names": list(model.target_names), "kind": model.target_scaling["kind"],
            "offset": model.target_scaling["offset"].tolist(),
            "scale": model.target_scaling["scale"].tolist()}),
        "mlpspec.columns": json.dumps(model.columns),
    })
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model.SerializeToString()


def _values_nodes(model: Model, node, initializers: list):
    """Regression: `values = double(logits) * scale + offset`, as infer.py's `predict`;
    returns the output's value info."""
    from onnx import TensorProto, helper, numpy_helper

    scaling = model.target_scaling
    current = node("Cast", ["logits"], "targets.double", to=TensorProto.DOUBLE)
    if scaling["kind"] != "none":
        initializers.append(numpy_helper.from_array(scaling["scale"].astype(np.float64), "targets.scale"))
        initializers.append(numpy_helper.from_array(scaling["offset"].astype(np.float64), "targets.offset"))
        current = node("Mul", [current, "targets.scale"], "targets.multiply")
        current = node("Add", [current, "targets.offset"], "targets.add")
    node("Identity", [current], "values")
    return helper.make_tensor_value_info("values", TensorProto.DOUBLE, ["N", model.outputs])


def _scaling_nodes(model: Model, current: str, node, constant, initializers: list) -> str:
    """Reshape raw `(N, *sample_shape)` to `(N, inputs)`, then `(x - offset) / scale`.

    The same operations in the same order as `infer.py` (and the trainer's
    `Scaling.apply`) in float32, skipping a subtraction of zeros and a
    division by ones as infer.py does, so the outputs agree bit for bit.
    """
    from onnx import numpy_helper

    if len(model.sample_shape) > 1:
        # 0 copies the batch dimension, so an empty batch reshapes too.
        initializers.append(numpy_helper.from_array(np.array([0, model.inputs], dtype=np.int64),
                                                    "preprocess.shape"))
        current = node("Reshape", [current, "preprocess.shape"], "preprocess.flatten")
    if model.columns is not None and model.columns["missing"] != "error":
        current = node("Where", [node("IsNaN", [current], "preprocess.missing"),
                                 constant("preprocess.fill", _fill_values(model)), current],
                       "preprocess.impute")
    if model.scaling["kind"] == "none":
        return current
    offset = model.scaling["offset"].astype(np.float32)
    scale = model.scaling["scale"].astype(np.float32)
    if offset.any():
        current = node("Sub", [current, constant("preprocess.offset", offset)], "preprocess.subtract")
    if not np.all(scale == 1):
        current = node("Div", [current, constant("preprocess.scale", scale)], "preprocess.divide")
    return current


def _fill_values(model: Model) -> np.ndarray:
    """float32 `(inputs,)`: what a NaN input becomes; a categorical column's fill
    category is 1 among its one-hot inputs, the others 0."""
    fills = []
    for feature in model.columns["features"]:
        if feature["kind"] == "numeric":
            fills.append(feature["fill"])
        else:
            fills.extend(1.0 if c == feature["fill"] else 0.0 for c in feature["categories"])
    return np.array(fills, dtype=np.float32)
