"""Checks that span several keys: does the network fit the data, the loss the output?

They run after every key has passed its own checks, and report through the
same `Reporter`, so a spec's problems all arrive together. What can only be
known by reading local data files (their feature count) is checked when the
data is loaded instead.
"""

from __future__ import annotations

import math

import attrs

from mlpspec.datasets import BUILTIN_DATASETS
from mlpspec.spec import model
from mlpspec.spec.schema import Reporter


@attrs.frozen
class DataFacts:
    """What the spec alone tells about its data (None: known only once loaded)."""

    label: str
    classes: int
    sample_shape: tuple[int, ...] | None = None
    train_samples: int | None = None
    test_samples: int | None = None


def data_facts(data: model.DataSpec) -> DataFacts:
    source = data.source
    if isinstance(source, model.BuiltinSource):
        name = model.name_of(source)
        builtin = BUILTIN_DATASETS[name]
        # A uint8 IDX label file is an 8-byte header then one byte per sample.
        return DataFacts(name, builtin.classes, builtin.image_shape,
                         builtin.files["train_labels"].size - 8,
                         builtin.files["test_labels"].size - 8)
    return DataFacts("the data", source.classes)


def cross_check(spec: model.Spec, report: Reporter) -> None:
    facts = data_facts(spec.data)
    _check_inputs(spec, facts, report)
    if spec.task == "regression":
        _check_regression(spec, facts, report)
    elif isinstance(spec.data.source, model.NpzSource) and spec.data.source.classes < 2:
        report.add("data.classes", f"expected the number of classes (at least 2) for task = "
                   f"'classification' (or set task = 'regression' for real-valued targets), "
                   f"found {spec.data.source.classes or 'none'}")
    else:
        _check_output(spec, facts, report)
        _check_class_weights(spec, facts, report)
    _check_loss_task(spec, report)
    _check_early_stopping_metric(spec, report)
    _check_validation(spec, facts, report)
    _check_augment(spec, facts, report)
    _check_averaging(spec, report)


def _check_inputs(spec: model.Spec, facts: DataFacts, report: Reporter) -> None:
    if facts.sample_shape is None:
        return
    if not spec.data.preprocess.flatten and len(facts.sample_shape) > 1:
        shape = "x".join(map(str, facts.sample_shape))
        report.add("data.preprocess.flatten", f"expected true: dense layers take flat inputs "
                   f"and {facts.label} samples are {shape}, found false")
        return
    features = math.prod(facts.sample_shape)
    if spec.network.inputs != features:
        report.add("network.inputs", f"expected {features} ({facts.label} samples flatten to "
                   f"{features} features), found {spec.network.inputs}")


def _check_output(spec: model.Spec, facts: DataFacts, report: Reporter) -> None:
    layers = spec.network.layers
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, model.DenseLayer)]
    if not dense:
        report.add("network.layers", "expected at least one 'dense.v1' layer, found none")
        return
    last = dense[-1]
    # classes = 0: taken from the training labels, checked once the data is loaded.
    if facts.classes and layers[last].units != facts.classes:
        report.add(f"network.layers[{last}].units",
                   f"expected {facts.classes} (the number of classes in {facts.label}; the last "
                   f"dense layer is the output), found {layers[last].units}")
    loss = spec.train.loss
    if isinstance(loss, model.CrossEntropyLoss):
        for index in range(last + 1, len(layers)):
            name = model.name_of(layers[index])
            report.add(f"network.layers[{index}].type",
                       f"expected no layer after the output layer [{last}]: "
                       f"'softmax_cross_entropy.v1' applies softmax to its outputs itself, "
                       f"found {name!r}")
    if isinstance(loss, model.MseLoss) and not spec.data.preprocess.one_hot:
        report.add("data.preprocess.one_hot", "expected true: 'mse.v1' compares the outputs "
                   "with one-hot targets, found false")


def _check_loss_task(spec: model.Spec, report: Reporter) -> None:
    from mlpspec import registry
    name = model.name_of(spec.train.loss)
    if spec.task not in registry.LOSSES[name].tasks:
        fits = ", ".join(repr(n) for n, entry in registry.LOSSES.items() if spec.task in entry.tasks)
        report.add("train.loss.type", f"expected a {spec.task} loss ({fits}) for task = "
                   f"{spec.task!r}, found {name!r}")


def _check_regression(spec: model.Spec, facts: DataFacts, report: Reporter) -> None:
    """Regression: real-valued targets from local data, no class-only settings.

    The number of targets (the output layer's units) is known once the data
    is read; the pipeline checks it where it checks the features.
    """
    source = spec.data.source
    if isinstance(source, model.BuiltinSource):
        report.add("task", f"expected 'classification': {facts.label} is a classification "
                   "dataset (regression reads targets from an npz or csv source), found "
                   "'regression'")
    elif not isinstance(source, (model.NpzSource, model.CsvSource)):
        report.add("data.source", f"expected 'npz' or 'csv' for task = 'regression' (an npz "
                   f"`y` or CSV target columns hold the real-valued targets), found "
                   f"{model.name_of(source)!r}")
    elif source.classes:
        report.add("data.classes", f"expected no classes for task = 'regression' (the targets "
                   f"are real values; remove the key), found {source.classes}")
    if not any(isinstance(layer, model.DenseLayer) for layer in spec.network.layers):
        report.add("network.layers", "expected at least one 'dense.v1' layer, found none")


def _check_class_weights(spec: model.Spec, facts: DataFacts, report: Reporter) -> None:
    loss = spec.train.loss
    if not isinstance(loss, model.CrossEntropyLoss):
        return
    if loss.balanced and loss.class_weights:
        report.add("train.loss.class_weights", "expected either balanced = true or explicit "
                   "class_weights, not both (remove one), found both")
    elif loss.class_weights and facts.classes and len(loss.class_weights) != facts.classes:
        # (classes 0: a CSV's classes come from its labels, checked once they are read)
        report.add("train.loss.class_weights", f"expected {facts.classes} weights (one per "
                   f"class of {facts.label}), found {len(loss.class_weights)}")


_REGRESSION_METRICS = ("loss", "rmse", "mae", "r2")


def _check_early_stopping_metric(spec: model.Spec, report: Reporter) -> None:
    early = spec.train.early_stopping
    if not early.patience:
        return
    if early.metric == "train_loss":
        return
    if spec.task == "regression" and early.metric not in _REGRESSION_METRICS:
        report.add("train.early_stopping.metric", f"expected one of 'loss', 'rmse', 'mae', 'r2' "
                   f"for task = 'regression' (accuracy needs classes), found {early.metric!r}")
    if spec.task == "classification" and early.metric not in ("accuracy", "loss"):
        report.add("train.early_stopping.metric", f"expected 'accuracy' or 'loss' for "
                   f"classification ({early.metric!r} is a regression metric; set task = "
                   f"'regression' for real-valued targets), found {early.metric!r}")


def _check_validation(spec: model.Spec, facts: DataFacts, report: Reporter) -> None:
    validation = spec.data.validation
    if validation.take_from == "none":
        early = spec.train.early_stopping
        if early.patience > 0 and early.metric != "train_loss":
            report.add("train.early_stopping.patience", "expected 0: early stopping needs a "
                       f"validation set and data.validation.take_from is 'none', found "
                       f"{early.patience} (or set train.early_stopping.metric = 'train_loss')")
        if spec.evaluate.split == "validation":
            report.add("evaluate.split", "expected 'test': data.validation.take_from is 'none', "
                       "found 'validation'")
        return
    size = validation.size
    if isinstance(size, float) and not 0.0 < size < 1.0:
        report.add("data.validation.size", f"expected an integer count or a fraction in (0, 1), "
                   f"found {size!r}")
        return
    available = facts.test_samples if validation.take_from == "test" else facts.train_samples
    problem = (None if available is None else
               validation_size_problem(size, available, f"the {facts.label} "
                                       f"{validation.take_from} set", validation.take_from))
    if problem is not None:
        report.add("data.validation.size", problem)


def validation_size_problem(size: int | float, available: int, where: str, pool: str) -> str | None:
    """What is wrong with taking `size` validation samples out of the `available` of
    `where` (the `pool` split, "train" or "test"), with the fix, or None. A fraction
    must leave at least one sample on each side."""
    count = model.held_out_count(size, available)
    if 0 < count < available:
        return None
    suggestion = max(1, min(available - 1, available // 10))
    if isinstance(size, float):
        return (f"expected a fraction that holds out between 1 and {available - 1} of the "
                f"{available} samples of {where}, found {size!r} ({count} samples); set data.validation.size to a fraction such as 0.1 or a count "
                f"such as {suggestion}")
    return (f"expected fewer than the {available} samples of {where} (some must remain), "
            f"found {size}; set data.validation.size to a smaller count such "
            f"as {suggestion} or a fraction such as 0.1"
            + ("" if pool == "train" else ", or data.validation.take_from = \"train\""))


def _check_augment(spec: model.Spec, facts: DataFacts, report: Reporter) -> None:
    augment = spec.data.augment
    if augment.whole_pixels and augment.translate != int(augment.translate):
        report.add("data.augment.translate", f"expected a whole number of pixels with "
                   f"data.augment.whole_pixels = true, found {augment.translate!r}")
    if augment.whole_pixels and not augment.translate:
        report.add("data.augment.whole_pixels", "expected false: it rounds translations and "
                   "data.augment.translate is 0, found true")
    if facts.sample_shape is not None and len(facts.sample_shape) != 2 and _augments(augment):
        shape = "x".join(map(str, facts.sample_shape))
        report.add("data.augment", f"expected no augmentation: it distorts 2-D images and "
                   f"{facts.label} samples are {shape}")


def _augments(augment: model.AugmentSpec) -> bool:
    return bool(augment.translate or augment.rotate or augment.scale or augment.elastic_alpha)


def _check_averaging(spec: model.Spec, report: Reporter) -> None:
    last = spec.train.averaging.last_epochs
    if not last:
        return
    if last > spec.train.epochs:
        report.add("train.averaging.last_epochs", f"expected at most train.epochs "
                   f"({spec.train.epochs}), found {last}")
    if spec.train.early_stopping.patience:
        report.add("train.averaging.last_epochs", "expected 0 with early stopping "
                   "(train.early_stopping.patience > 0): a stopped run has no fixed last "
                   f"epochs to average, found {last}")
    for index, layer in enumerate(spec.network.layers):
        if isinstance(layer, model.BatchNormLayer):
            report.add("train.averaging.last_epochs", f"expected 0: network.layers[{index}] is "
                       "'batchnorm.v1', whose running statistics do not match averaged "
                       f"weights, found {last}")
