"""Every registered name, proven end to end, and nothing named outside the registry.

For each entry of `mlpspec.registry`: a spec file naming it parses, `fit`
trains a step with it, and for layers the exported model gives the trainer's
outputs in `mlpspec.infer` and in onnxruntime. The structural tests fail when a
name is added in one place only: in infer.py's table, in the spec classes or
in the engine classes without a registry entry (an entry without its infer.py
op fails at import).
"""

from __future__ import annotations

import inspect
import json

import attrs
import numpy as np
import pytest

from mlpspec import infer, registry, rng
from mlpspec.data.prepare import RawInput
from mlpspec.export import model_to_bytes
from mlpspec.nn import layers, losses, optim, schedules
from mlpspec.spec import model, parse_spec, render_spec
from mlpspec.train import build_loss, build_network, build_optimizer, build_schedule, fit

from conftest import npz_spec
from test_train import blobs

#: Values for the keys whose spec has no default (a new entry with one fails until added here).
REQUIRED_KEYS = {
    "dense.v1": {"units": 6},
    "dropout.v1": {"rate": 0.25},
    "step.v1": {"step_epochs": 1},
    "exponential.v1": {"gamma": 0.5},
}


def table(header: str, keys: dict) -> str:
    """A TOML table; JSON scalars (numbers, strings, booleans) are valid TOML."""
    return header + "\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())


def spec_text(layers: list[tuple[str, dict]], train: dict | None = None, **tables: dict) -> str:
    """A spec on 20 unscaled features and 3 classes (`test_train.blobs`); `tables`
    are `[train.<name>]` tables (loss, optimizer, schedule)."""
    text = npz_spec("registry", inputs=20, seed=1, data=table("[data.preprocess]", {"scale": "none"}))
    for name, keys in layers:
        text += table("[[network.layers]]", {"type": name, **keys})
    text += table("[train]", {"epochs": 1, "batch_size": 300, **(train or {})})  # one step
    for name, keys in tables.items():
        text += table(f"[train.{name}]", keys)
    return text


def export(result, spec, data) -> bytes:
    return model_to_bytes(result.network, spec, scaling=data.scaling,
                          raw_input=RawInput.of(data.x_train), sample_shape=data.sample_shape,
                          class_names=data.class_names, metrics={}, checksums={}, cache_key="registry")


def trained_one_step(spec, data):
    """fit's result, after checking that the step changed every trained array."""
    before = build_network(spec).state_dict()
    result = fit(spec, data)
    after = result.network.state_dict()
    for name, array in before.items():
        if not name.endswith(("running_mean", "running_var")):
            assert not np.array_equal(after[name], array), f"{name} did not move"
    return result


# ---------------------------------------------------------------- layers


@pytest.mark.parametrize("name", list(registry.LAYERS))
def test_every_layer_trains_exports_and_infers_alike(name):
    keys = REQUIRED_KEYS.get(name, {})
    spec = parse_spec(spec_text([("dense.v1", {"units": 8}), (name, keys), ("dense.v1", {"units": 3})]),
                      "registry.toml")
    assert registry.name_of(spec.network.layers[1]) == name
    data = blobs()
    result = trained_one_step(spec, data)
    assert type(result.network.layers[1]) is registry.LAYERS[name].engine

    loaded = infer.load(export(result, spec, data))
    assert loaded.layers[1]["type"] == name
    X = data.x_test  # scaling "none": raw samples are the network's inputs
    expected = result.network.predict(X)
    np.testing.assert_allclose(loaded.logits(X), expected, rtol=1e-6)
    np.testing.assert_allclose(loaded.logits(X[:2]), expected[:2], rtol=1e-6)  # the small-batch ops

    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from mlpspec.onnx_export import to_onnx

    session = ort.InferenceSession(to_onnx(loaded), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(onnx_logits, loaded.logits(X), atol=1e-5)


def test_infer_table_holds_exactly_the_registered_layers():
    assert list(infer.LAYER_OPS) == list(registry.LAYERS)
    for name, entry in registry.LAYERS.items():
        assert entry.infer is infer.LAYER_OPS[name]
        assert callable(entry.onnx), name


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("name", [name for name, entry in registry.LOSSES.items()
                                  if "classification" in entry.tasks])
def test_every_loss_trains_and_stores_its_output_kind(name):
    spec = parse_spec(spec_text([("dense.v1", {"units": 3})], loss={"type": name}), "registry.toml")
    assert registry.name_of(spec.train.loss) == name
    assert type(build_loss(spec)) is registry.LOSSES[name].engine
    data = blobs()
    result = trained_one_step(spec, data)
    loaded = infer.load(export(result, spec, data))
    assert (loaded.loss, loaded.output) == (name, registry.LOSSES[name].output)
    # The output kind must turn outputs into what the loss itself predicts: the
    # target at which its gradient vanishes (softmax(Z) for cross-entropy, Z for mse).
    Z = result.network.predict(data.x_test)
    P = loaded.predict_proba(data.x_test)
    _, dZ = build_loss(spec)(Z, P)
    assert np.abs(dZ).max() < 1e-8


def regression_blobs(seed: int = 0):
    """`blobs` with two real-valued targets per sample on scales far from 1, standardised."""
    from mlpspec.data.prepare import Prepared, Scaling, fit_scaling

    data = blobs(seed)
    rng_targets = np.random.default_rng(seed + 1)
    M = rng_targets.normal(0.0, 1.0, (20, 2))
    y_train, y_val, y_test = (x.astype(np.float64) @ M * [30.0, 0.5] + [200.0, -3.0]
                              for x in (data.x_train, data.x_val, data.x_test))
    scaling = fit_scaling("standardize", y_train)
    return Prepared(data.x_train, y_train, scaling.apply(y_train, data.x_train.dtype), data.x_val,
                    y_val, data.x_test, y_test, 0, (), (20,), data.scaling,
                    task="regression", target_names=("a", "b"), target_scaling=scaling)


@pytest.mark.parametrize("name", [name for name, entry in registry.LOSSES.items()
                                  if "regression" in entry.tasks])
def test_every_regression_loss_trains_exports_and_infers_alike(name):
    text = spec_text([("dense.v1", {"units": 2})], loss={"type": name})
    text = text.replace("classes = 3\n", "").replace('seed = 1\n', 'seed = 1\ntask = "regression"\n')
    spec = parse_spec(text, "registry.toml")
    assert spec.task == "regression" and type(build_loss(spec)) is registry.LOSSES[name].engine
    data = regression_blobs()
    result = trained_one_step(spec, data)
    blob = model_to_bytes(result.network, spec, scaling=data.scaling,
                          raw_input=RawInput.of(data.x_train), sample_shape=data.sample_shape,
                          class_names=(),
                          targets={"names": data.target_names, "scaling": data.target_scaling},
                          metrics={}, checksums={}, cache_key="registry")
    loaded = infer.load(blob)
    assert (loaded.loss, loaded.output, loaded.task) == (name, registry.LOSSES[name].output, "regression")
    X = data.x_test
    expected = data.target_scaling.invert(result.network.predict(X))
    np.testing.assert_array_equal(loaded.predict(X), expected)  # same outputs, same arithmetic

    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from mlpspec.onnx_export import to_onnx

    session = ort.InferenceSession(to_onnx(loaded), providers=["CPUExecutionProvider"])
    values = session.run(["values"], {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(values, loaded.predict(X), rtol=1e-6)


# ---------------------------------------------------------------- optimizers, schedules, initialisers


def spec_keys_reach_the_engine(settings, engine) -> None:
    """The engine holds each key of `settings` under the same name and value."""
    for field in attrs.fields(type(settings)):
        assert vars(engine)[field.name] == getattr(settings, field.name), field.name


@pytest.mark.parametrize("name", list(registry.OPTIMIZERS))
def test_every_optimizer_trains_a_step(name):
    spec = parse_spec(spec_text([("dense.v1", {"units": 3})], optimizer={"type": name, "learning_rate": 0.02}),
                      "registry.toml")
    assert registry.name_of(spec.train.optimizer) == name
    optimizer = build_optimizer(spec)
    assert type(optimizer) is registry.OPTIMIZERS[name].engine
    spec_keys_reach_the_engine(spec.train.optimizer, optimizer)
    trained_one_step(spec, blobs())


@pytest.mark.parametrize("name", list(registry.SCHEDULES))
def test_every_schedule_sets_the_rate_fit_uses(name):
    text = spec_text([("dense.v1", {"units": 3})], {"epochs": 2, "batch_size": 100},
                     optimizer={"type": "sgd.v1", "learning_rate": 0.05},
                     schedule={"type": name, **REQUIRED_KEYS.get(name, {})})
    spec = parse_spec(text, "registry.toml")
    assert registry.name_of(spec.train.schedule) == name
    schedule = build_schedule(spec)
    assert type(schedule) is registry.SCHEDULES[name].engine
    assert schedule.learning_rate == 0.05  # the optimizer's rate, as given
    spec_keys_reach_the_engine(spec.train.schedule, schedule)
    result = fit(spec, blobs())
    # 3 steps per epoch; each record holds the rate of its epoch's last step
    assert [r.learning_rate for r in result.history] == [schedule.lr_at(2, 6, 3), schedule.lr_at(5, 6, 3)]


@pytest.mark.parametrize("name", list(registry.INITIALIZERS))
def test_every_initializer_draws_the_first_weights(name):
    spec = parse_spec(spec_text([("dense.v1", {"units": 3, "init": name, "std": 0.5})]), "registry.toml")
    network = build_network(spec)
    engine = registry.INITIALIZERS[name].engine
    assert network.layers[0].init is engine
    child = rng.generator(spec.seed, "init").spawn(1)[0]  # as Network.build draws for layer 0
    np.testing.assert_array_equal(network.layers[0].params["W"], engine(child, 20, 3, np.float32, 0.5))
    trained_one_step(spec, blobs())


# ---------------------------------------------------------------- one name, one place


@pytest.mark.parametrize("kind", list(registry.KINDS))
def test_engines_take_exactly_the_spec_keys(kind):
    for name, entry in registry.KINDS[kind].items():
        if entry.spec is None:  # an initialiser: chosen by name, no keys of its own
            continue
        parameters = inspect.signature(entry.engine).parameters
        keyword = [p for p, info in parameters.items() if info.kind is info.KEYWORD_ONLY]
        assert keyword == [field.name for field in attrs.fields(entry.spec)], name
        assert [p for p in parameters if p not in keyword] == (["learning_rate"] if kind == "schedule" else [])


def test_spec_choices_are_the_registry():
    spec = parse_spec(spec_text([("dense.v1", {"units": 3})]), "registry.toml")
    fields = {f.name: f for f in attrs.fields(model.TrainSpec)}
    for kind, field in [("loss", fields["loss"]), ("optimizer", fields["optimizer"]),
                        ("schedule", fields["schedule"]),
                        ("layer", attrs.fields_dict(model.NetworkSpec)["layers"])]:
        assert dict(field.metadata["tagged"].choices) == registry.spec_classes(kind)
    init_check = attrs.fields_dict(model.DenseLayer)["init"].metadata["checks"][0]
    assert init_check.choices == tuple(registry.INITIALIZERS)
    assert "he_normal" in render_spec(spec)


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_every_engine_class_is_registered():
    engines = {entry.engine for table in registry.KINDS.values() for entry in table.values()}
    loss_classes = {obj for obj in vars(losses).values()
                    if isinstance(obj, type) and obj.__module__ == losses.__name__}
    classes = (_subclasses(layers.Layer) | _subclasses(optim.Optimizer) | _subclasses(schedules.Schedule)
               | loss_classes)
    for engine in classes:
        assert engine in engines, f"{engine.__name__} has no registry entry"


def test_every_spec_class_is_registered_or_part_of_the_spec():
    reachable: set[type] = set()

    def walk(cls: type) -> None:
        if cls in reachable:
            return
        reachable.add(cls)
        reachable.update(cls.__mro__)  # bases such as BuiltinSource
        for field in attrs.fields(attrs.resolve_types(cls)):
            tagged = field.metadata.get("tagged")
            for variant in (tagged.choices.values() if tagged is not None else ()):
                walk(variant)
            if attrs.has(field.type):
                walk(field.type)

    walk(model.Spec)
    declared = {obj for obj in vars(model).values()
                if isinstance(obj, type) and attrs.has(obj) and obj.__module__ == model.__name__}
    assert declared - reachable == set(), "spec classes neither registered nor used by Spec"
