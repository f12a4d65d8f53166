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
    if spec.task == "regression":  # the task key is declared; its engine is being built
        report.add("task", "expected 'classification': regression is not implemented yet, "
                   "found 'regression'")
        return
    facts = data_facts(spec.data)
    _check_inputs(spec, facts, report)
    _check_output(spec, facts, report)
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


def _check_validation(spec: model.Spec, facts: DataFacts, report: Reporter) -> None:
    validation = spec.data.validation
    if validation.take_from == "none":
        if spec.train.early_stopping.patience > 0:
            report.add("train.early_stopping.patience", "expected 0: early stopping needs a "
                       f"validation set and data.validation.take_from is 'none', found "
                       f"{spec.train.early_stopping.patience}")
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
    if isinstance(size, int) and available is not None and size >= available:
        report.add("data.validation.size", f"expected fewer than the {available} samples of the "
                   f"{facts.label} {validation.take_from} set (some must remain), found {size}")


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
