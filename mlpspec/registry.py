"""Every registered name, declared once, with everything about it.

A component (layer, loss, optimizer, schedule, weight initialiser) is chosen
by a versioned name ("dense.v1", "adam.v1"); a name's meaning never changes,
a new meaning gets a new name. This module is the one place that maps each
name to

    spec    its frozen attrs class in `mlpspec.spec.model`: keys, defaults,
            docs and checks (the one source of valid values; the engines do
            not check again)
    engine  its class (or function) in `mlpspec.nn`, whose constructor takes
            exactly the spec's keys: `entry.build(settings)` is
            `engine(**keys)`, never a translation
    infer   (layers) its entry in `mlpspec.infer.LAYER_OPS`, the standalone
            reader's own table (that file imports nothing from mlpspec)
    onnx    (layers) its node builder in `mlpspec.onnx_export`
    output  (losses) what the model file's readers apply to the outputs:
            "softmax" or "identity"
    tasks   (losses) the spec's `task` values the loss serves

The spec parser and `docs/spec.md` take their choices from here (through
`model._registered`), and so do the trainer, the exporter and the ONNX
converter. `tests/test_registry.py` walks every entry end to end and checks
that infer.py's table holds exactly the layer names declared here.

    registry.build(spec.train.optimizer)          # -> an nn.optim.Adam, say
    registry.make_layer("dense.v1", {"units": 8}, n_in=4, rng=rng)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from mlpspec import infer, onnx_export
from mlpspec.nn import init, layers, losses, optim, schedules
from mlpspec.spec import model
from mlpspec.spec.schema import Reporter, structure


@attrs.frozen
class Entry:
    """A registered name: its spec class and the engine built from it.

    `names` lists keys whose value is itself a registered name (dense's
    `init`) and the table it is looked up in: the engine gets that entry's
    engine (the initializer function) under the same key.
    """

    name: str
    spec: type | None
    engine: Callable[..., Any]
    names: Mapping[str, Mapping[str, Entry]] = attrs.field(factory=dict, kw_only=True)

    def build(self, settings: Any, *args: Any) -> Any:
        """The engine for `settings` (an instance of `spec`): `engine(*args, **keys)`.

        `args` are what the engine needs besides its keys (a schedule's
        learning rate).
        """
        if type(settings) is not self.spec:
            raise TypeError(f"{self.name}: expected settings of {self.spec}, got {type(settings).__name__}")
        keys = attrs.asdict(settings, recurse=False)
        for key, table in self.names.items():
            keys[key] = table[keys[key]].engine
        return self.engine(*args, **keys)


@attrs.frozen
class LayerEntry(Entry):
    infer: infer.LayerOp = attrs.field(kw_only=True)
    onnx: Callable[[onnx_export.LayerNodes, str], str] = attrs.field(kw_only=True)


@attrs.frozen
class LossEntry(Entry):
    output: str = attrs.field(kw_only=True)  # "softmax" or "identity", stored in the model file
    tasks: tuple[str, ...] = attrs.field(kw_only=True)  # "classification" and/or "regression"


def _table(*entries: Entry) -> dict[str, Any]:
    return {entry.name: entry for entry in entries}


INITIALIZERS: dict[str, Entry] = _table(
    Entry("normal", None, init.normal),
    Entry("he_normal", None, init.he_normal),
    Entry("he_uniform", None, init.he_uniform),
    Entry("glorot_normal", None, init.glorot_normal),
    Entry("glorot_uniform", None, init.glorot_uniform),
)


def _layer(name: str, spec: type, engine: type[layers.Layer],
           onnx: Callable[[onnx_export.LayerNodes, str], str], **names: Mapping[str, Entry]) -> LayerEntry:
    return LayerEntry(name, spec, engine, infer=infer.LAYER_OPS[name], onnx=onnx, names=names)


LAYERS: dict[str, LayerEntry] = _table(
    _layer("dense.v1", model.DenseLayer, layers.Dense, onnx_export.gemm, init=INITIALIZERS),
    _layer("relu.v1", model.ReluLayer, layers.ReLU, onnx_export.relu),
    _layer("leaky_relu.v1", model.LeakyReluLayer, layers.LeakyReLU, onnx_export.leaky_relu),
    _layer("sigmoid.v1", model.SigmoidLayer, layers.Sigmoid, onnx_export.sigmoid),
    _layer("tanh.v1", model.TanhLayer, layers.Tanh, onnx_export.tanh),
    _layer("gelu.v1", model.GeluLayer, layers.GELU, onnx_export.gelu),
    _layer("dropout.v1", model.DropoutLayer, layers.Dropout, onnx_export.identity),
    _layer("batchnorm.v1", model.BatchNormLayer, layers.BatchNorm, onnx_export.batch_normalization),
)

LOSSES: dict[str, LossEntry] = _table(
    LossEntry("softmax_cross_entropy.v1", model.CrossEntropyLoss, losses.SoftmaxCrossEntropy,
              output="softmax", tasks=("classification",)),
    LossEntry("mse.v1", model.MseLoss, losses.MeanSquaredError, output="identity",
              tasks=("classification", "regression")),
    LossEntry("mae.v1", model.MaeLoss, losses.MeanAbsoluteError, output="identity",
              tasks=("regression",)),
    LossEntry("huber.v1", model.HuberLoss, losses.Huber, output="identity", tasks=("regression",)),
)

OPTIMIZERS: dict[str, Entry] = _table(
    Entry("sgd.v1", model.SgdOptimizer, optim.SGD),
    Entry("momentum.v1", model.MomentumOptimizer, optim.Momentum),
    Entry("nesterov.v1", model.NesterovOptimizer, optim.Nesterov),
    Entry("adam.v1", model.AdamOptimizer, optim.Adam),
    Entry("adamw.v1", model.AdamWOptimizer, optim.AdamW),
)

# A schedule's engine also takes the optimizer's learning rate, first: `build(settings, lr)`.
SCHEDULES: dict[str, Entry] = _table(
    Entry("constant.v1", model.ConstantSchedule, schedules.Constant),
    Entry("step.v1", model.StepSchedule, schedules.Step),
    Entry("exponential.v1", model.ExponentialSchedule, schedules.Exponential),
    Entry("cosine.v1", model.CosineSchedule, schedules.Cosine),
    Entry("onecycle.v1", model.OneCycleSchedule, schedules.OneCycle),
)

#: kind -> its table, the kinds `model._registered` asks for.
KINDS: dict[str, dict[str, Entry]] = {
    "layer": LAYERS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "initializer": INITIALIZERS,
}

_BY_SPEC: dict[type, Entry] = {entry.spec: entry for table in KINDS.values()
                               for entry in table.values() if entry.spec is not None}
_SOURCE_NAMES = {cls: name for name, cls in model.SOURCES.items()}


def spec_classes(kind: str) -> dict[str, type | None]:
    """name -> spec class of every registered `kind`, in declaration order."""
    return {name: entry.spec for name, entry in KINDS[kind].items()}


def entry_of(settings: Any) -> Entry:
    """The entry whose spec class `settings` is an instance of."""
    return _BY_SPEC[type(settings)]


def name_of(settings: Any) -> str:
    """The registered name of a layer, loss, optimizer or schedule object, or of a data source."""
    if type(settings) in _SOURCE_NAMES:
        return _SOURCE_NAMES[type(settings)]
    return entry_of(settings).name


def build(settings: Any, *args: Any) -> Any:
    """The engine object for a spec object: `entry_of(settings).build(settings, *args)`."""
    return entry_of(settings).build(settings, *args)


# ---------------------------------------------------------------- from plain keys


def from_keys(kind: str, name: str, keys: Mapping[str, Any] | None = None) -> Any:
    """The spec object of the registered `kind` `name` from plain `keys`, checked and
    with defaults filled in as in a spec file; ValueError naming the name and key."""
    table = KINDS[kind]
    if name not in table or table[name].spec is None:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(table)}")
    report = Reporter(f"{kind} {name}")
    value = structure(table[name].spec, dict(keys or {}), name, report)
    if report.problems:
        raise ValueError("; ".join(f"{problem.path}: {problem.message}" for problem in report.problems))
    return value


def make(kind: str, name: str, keys: Mapping[str, Any] | None = None, *args: Any) -> Any:
    """The engine of `kind` `name` from plain keys: `make("optimizer", "adam.v1", {})`."""
    return build(from_keys(kind, name, keys), *args)


def make_layer(name: str, keys: Mapping[str, Any], n_in: int, rng: np.random.Generator,
               dtype=np.float32) -> layers.Layer:
    """A built layer from plain keys: `make_layer("dense.v1", {"units": 8}, 4, rng)`."""
    layer = make("layer", name, keys)
    layer.build(n_in, rng, dtype)
    return layer


def make_network(specs: Sequence[tuple[str, Mapping[str, Any]]], n_in: int,
                 rng: np.random.Generator, dtype=np.float32) -> layers.Network:
    """A built network from `[(name, keys), ...]`, as `Network.build` draws its weights."""
    return layers.Network.build([make("layer", name, keys) for name, keys in specs], n_in, rng, dtype)
