"""The spec language: what a spec file may say, as frozen attrs classes.

Each class is one TOML table; each field is one key, declared with its type,
default and meaning. `docs/spec.md` is generated from these declarations.
Registered names carry versions (`"relu.v1"`): a name's meaning never changes,
a new meaning gets a new name.

The names of layers, losses, optimizers, schedules and weight initialisers
are declared in `mlpspec.registry`, each once, next to its class here and
its engine in `mlpspec.nn`; a class's fields are exactly the keyword
arguments of its engine, so building the engine is a lookup, not a
translation. Data sources are not components; their names are `SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from mlpspec.spec.schema import (
    Tagged,
    in_range,
    matches,
    non_empty,
    non_negative,
    one_of,
    option,
    positive,
)

SPEC_VERSION = 1


def _registered(kind: str) -> Callable[[], Mapping[str, type | None]]:
    """The registered `kind` ("layer", "loss", ...): name -> spec class, looked up in
    `mlpspec.registry` when first needed (it imports this module, so not at import)."""
    def choices() -> Mapping[str, type | None]:
        from mlpspec import registry
        return registry.spec_classes(kind)
    return choices

# ---------------------------------------------------------------- data


@attrs.frozen
class BuiltinSource:
    """A dataset mlpspec knows: downloaded from mirrors and verified by checksum."""

    mirrors: tuple[str, ...] = option((), doc=(
        "Extra mirrors tried before the public ones (after `MLPSPEC_MIRRORS`): http(s) "
        "URLs, `file://` URLs or directory paths, each holding the dataset's files."))


@attrs.frozen
class IdxSource:
    """The four IDX files of an MNIST-like dataset (gzip or raw), paths relative to the spec."""

    train_images: str = option(doc="IDX file of training images.")
    train_labels: str = option(doc="IDX file of training labels.")
    test_images: str = option(doc="IDX file of test images.")
    test_labels: str = option(doc="IDX file of test labels.")
    classes: int = option(doc="Number of classes; labels must lie in [0, classes).",
                          checks=(in_range(2, 1_000_000),))

    def files(self) -> dict[str, str]:
        """The data files by key, as written in the spec."""
        return {"train_images": self.train_images, "train_labels": self.train_labels,
                "test_images": self.test_images, "test_labels": self.test_labels}


@attrs.frozen
class NpzSource:
    """Two `.npz` archives, each holding arrays `x` (samples first) and `y` (labels)."""

    train: str = option(doc="`.npz` file with the training set.")
    test: str = option(doc="`.npz` file with the test set.")
    classes: int = option(0, doc=(
        "Number of classes; labels must lie in [0, classes). Required (at least 2) for "
        "classification; 0 (the default) for `task = \"regression\"`, whose `y` are float "
        "targets `(n,)` or `(n, k)`."), checks=(in_range(0, 1_000_000),))

    def files(self) -> dict[str, str]:
        """The data files by key, as written in the spec."""
        return {"train": self.train, "test": self.test}


@attrs.frozen
class CsvSource:
    """Two CSV files, one sample a line: a label column plus feature columns.

    Plain numeric files (MNIST as CSV) need only `train`, `test` and `classes`.
    Tabular files name their columns in a header (`header = true`): the label
    column and the feature columns can then be chosen by name, class labels
    may be strings, `categorical` columns are one-hot encoded and `missing`
    says what an empty cell means. Everything fitted (classes, categories,
    fill values) comes from the training file, and travels with the model.
    """

    train: str = option(doc="CSV file with the training set.")
    test: str = option(doc="CSV file with the test set.")
    classes: int = option(0, doc=(
        "Number of classes; labels must then be integers in [0, classes). 0 (the default) takes "
        "the classes from the distinct labels of the training file (numbers or strings, "
        "sorted), and keeps their names in the model."), checks=(in_range(0, 1_000_000),))
    label_column: int | str = option(0, doc=(
        "The label (or, for `task = \"regression\"`, target) column: an index (negative counts "
        "from the end, -1 is the last column) or a column name from the header."))
    header: bool = option(False, doc="Whether the first line is a header naming the columns.")
    targets: tuple[str, ...] = option((), doc=(
        "For `task = \"regression\"`: the target columns by header name, one network output "
        "each, in this order; they replace `label_column`. Empty = `label_column` is the one "
        "target."))
    features: tuple[str, ...] = option((), doc=(
        "Feature columns to use, by header name, in this order; empty = every column but the "
        "label column (and those in `exclude`)."))
    exclude: tuple[str, ...] = option((), doc="Columns that are not features (ids, leaks), by "
                                      "header name.")
    categorical: tuple[str, ...] = option((), doc=(
        "Feature columns holding categories (any text): each is one-hot encoded, one input per "
        "category seen in the training split, in sorted order."))
    unseen: str = option("error", doc=(
        "A category of a `categorical` column that the training split did not have (in the test "
        "file or at inference): `error` refuses it, `ignore` encodes it as all zeros."),
        checks=(one_of("error", "ignore"),))
    missing: str = option("error", doc=(
        "What an empty cell (or NA, NaN, ?) in a feature column means: `error` refuses the file, "
        "naming line and column; `mean`, `median` or `most_frequent` fill it with that statistic "
        "of the column in the training split (categorical columns always take their most "
        "frequent category). Stored in the model and applied at inference."),
        checks=(one_of("error", "mean", "median", "most_frequent"),))

    def files(self) -> dict[str, str]:
        """The data files by key, as written in the spec."""
        return {"train": self.train, "test": self.test}


@attrs.frozen
class MnistSource(BuiltinSource):
    """MNIST handwritten digits (LeCun, Cortes, Burges): 60000 train, 10000 test, 28x28."""


@attrs.frozen
class FashionMnistSource(BuiltinSource):
    """Fashion-MNIST (Zalando): 10 clothing classes, 60000 train, 10000 test, 28x28."""


SOURCES = {
    "mnist": MnistSource,
    "fashion-mnist": FashionMnistSource,
    "idx": IdxSource,
    "npz": NpzSource,
    "csv": CsvSource,
}


@attrs.frozen
class PreprocessSpec:
    """How raw samples become network inputs."""

    scale: str = option("unit", doc=(
        "`unit` divides by 255 (the tutorial's [0, 1] pixels; a warning says when the training "
        "data's maximum is far from 255); `standardize` subtracts the per-feature mean and "
        "divides by the std; `minmax` maps each feature's training range to [0, 1]; both "
        "fitted on the training split only; `none` keeps raw values."),
        checks=(one_of("unit", "standardize", "minmax", "none"),))
    flatten: bool = option(True, doc="Flatten each sample to one feature vector (28x28 -> 784).")
    one_hot: bool = option(True, doc="Encode labels as one-hot vectors (required by `mse.v1`).")
    target_scale: str = option("standardize", doc=(
        "Regression only: `standardize` trains on targets minus their mean over their std "
        "(fitted on the training split, inverted at inference); `none` on the raw targets."),
        checks=(one_of("standardize", "none"),))


@attrs.frozen
class ValidationSpec:
    """Where the validation set comes from.

    The default holds out 10 % of the training set, stratified by class, so
    it works on a dataset of any size (a few hundred samples give a few dozen
    validation samples) and the test set is scored only at the end. The
    tutorial's split of the MNIST test set is `take_from = "test"`,
    `size = 5000`, `stratify = false`, `shuffle = false` (specs/mnist.toml).
    """

    take_from: str = option("train", doc=(
        "`train` holds out part of the training set, `test` splits the test set (the "
        "tutorial's 5000/5000), `none` trains without validation."),
        checks=(one_of("test", "train", "none"),))
    size: int | float = option(0.1, doc=(
        "Validation samples: a count (integer), or a fraction of the split (float in (0, 1)); "
        "at least 1 sample and 1 left over."),
        checks=(positive,))
    stratify: bool = option(True, doc=(
        "Keep each class's share equal in both parts (classification; regression targets "
        "are not classes and are split at random)."))
    shuffle: bool = option(True, doc=(
        "Pick validation samples at random (from the seed); `false` takes the first `size`."))


def held_out_count(size: int | float, available: int) -> int:
    """How many samples `size` (a count, or a float fraction) holds out of `available`.

    The one rule the spec checks and the data split both apply."""
    return int(round(size * available)) if isinstance(size, float) else int(size)


@attrs.frozen
class AugmentSpec:
    """Random distortions of the training images, drawn afresh every epoch; all 0 = off.

    Each sample gets its own rotation, scaling and translation (and optional
    elastic distortion), read with bilinear interpolation; pixels moved in
    from outside the image are blank. Needs 2-D image samples. Validation
    and test images are never distorted.
    """

    translate: float = option(0.0, doc=(
        "Largest shift in pixels, drawn uniformly in [-translate, translate] per axis (0 = off)."),
        checks=(in_range(0.0, 100.0),))
    whole_pixels: bool = option(False, doc=(
        "Shift by whole pixels only (integers in [-translate, translate]); with no rotation, "
        "scaling or elastic distortion this is a fast path of plain array shifts."))
    rotate: float = option(0.0, doc="Largest rotation in degrees, drawn uniformly in "
                           "[-rotate, rotate] (0 = off).", checks=(in_range(0.0, 180.0),))
    scale: float = option(0.0, doc=(
        "Largest relative change of size: a zoom drawn uniformly in [1 - scale, 1 + scale] "
        "(0 = off)."), checks=(in_range(0.0, 1.0, high_open=True),))
    elastic_alpha: float = option(0.0, doc=(
        "Elastic distortion strength (Simard et al. 2003): uniform noise in [-1, 1] per pixel, "
        "Gaussian-smoothed, times this many pixels (0 = off; Simard used 34 with sigma 4)."),
        checks=(non_negative,))
    elastic_sigma: float = option(4.0, doc="Standard deviation in pixels of the elastic "
                                  "distortion's Gaussian smoothing.", checks=(positive,))


@attrs.frozen
class DataSpec:
    """The `[data]` table: the dataset and how it is prepared."""

    source: object = option(doc="Where the data comes from.",
                            tagged=Tagged("source", SOURCES, inline=True))
    preprocess: PreprocessSpec = option(PreprocessSpec(), doc="Preprocessing.")
    validation: ValidationSpec = option(ValidationSpec(), doc="Validation split.")
    augment: AugmentSpec = option(AugmentSpec(), doc="Augmentation of the training images.")


# ---------------------------------------------------------------- network


@attrs.frozen
class DenseLayer:
    """A fully-connected layer `Y = X @ W + b`, bias initialised to zero."""

    units: int = option(doc="Number of outputs.", checks=(in_range(1, 1_000_000),))
    init: str = option("he_normal", doc="Weight initialiser.", checks=(one_of(_registered("initializer")),))
    std: float = option(0.01, doc="Standard deviation of init `normal` (the tutorial's 0.01).",
                        checks=(positive,))


@attrs.frozen
class ReluLayer:
    """ReLU, `max(x, 0)` (the tutorial's activation)."""


@attrs.frozen
class SigmoidLayer:
    """Logistic sigmoid."""


@attrs.frozen
class TanhLayer:
    """Hyperbolic tangent."""


@attrs.frozen
class GeluLayer:
    """GELU (Hendrycks & Gimpel)."""


@attrs.frozen
class LeakyReluLayer:
    """Leaky ReLU: `x` for x > 0, `alpha * x` otherwise."""

    alpha: float = option(0.01, doc="Slope for negative inputs.", checks=(in_range(0.0, 1.0),))


@attrs.frozen
class DropoutLayer:
    """Inverted dropout: zeroes a share of inputs during training only."""

    rate: float = option(doc="Share of inputs dropped.", checks=(in_range(0.0, 1.0, high_open=True),))


@attrs.frozen
class BatchNormLayer:
    """Batch normalisation; running statistics are used at inference."""

    momentum: float = option(0.9, doc="Weight of the old running statistics per step.",
                             checks=(in_range(0.0, 1.0, high_open=True),))
    epsilon: float = option(1e-5, doc="Added to the variance for stability.", checks=(positive,))


@attrs.frozen
class NetworkSpec:
    """The `[network]` table: the layers in order, input to output."""

    inputs: int = option(doc="Number of input features (784 for flattened 28x28 images).",
                         checks=(positive,))
    layers: tuple[object, ...] = option(
        doc="The layers, in order; the last dense layer's `units` is the number of classes "
            "(regression: of targets).",
        checks=(non_empty,), tagged=Tagged("type", _registered("layer")))


# ---------------------------------------------------------------- train


def _all_positive(values: tuple[float, ...]) -> str | None:
    return None if all(v > 0 for v in values) else "every weight > 0"


@attrs.frozen
class CrossEntropyLoss:
    """Softmax and cross-entropy fused (numerically stable); the tutorial's loss."""

    label_smoothing: float = option(0.0, doc="Share of target mass spread over all classes.",
                                    checks=(in_range(0.0, 1.0, high_open=True),))
    balanced: bool = option(False, doc=(
        "Weight each class by `n / (classes * count)`, counted on the training split "
        "(scikit-learn's `balanced`), so rare classes count as much as common ones."))
    class_weights: tuple[float, ...] = option((), doc=(
        "Explicit weight per class, in class order (one number per class; empty = all 1). "
        "Each sample's loss is multiplied by its class's weight; the mean still divides by "
        "the number of samples."), checks=(_all_positive,))


@attrs.frozen
class MseLoss:
    """Mean squared error on the raw outputs: mean over samples of `0.5 * sum((Z - T)**2)`.

    Targets are one-hot rows (classification) or the real-valued targets (regression)."""


@attrs.frozen
class MaeLoss:
    """Mean absolute error (regression): mean over samples of `sum(abs(Z - T))`."""


@attrs.frozen
class HuberLoss:
    """Huber loss (regression): per output `0.5 r**2` for `abs(r) <= delta`, else
    `delta * (abs(r) - 0.5 delta)`, summed over outputs, mean over samples."""

    delta: float = option(1.0, doc="Where the quadratic part turns linear, in the units the "
                          "network sees (standardised targets: standard deviations).",
                          checks=(positive,))


_LR = dict(doc="Base learning rate.", checks=(positive,))


@attrs.frozen
class SgdOptimizer:
    """Plain SGD, `p -= lr * g` (the tutorial's update)."""

    learning_rate: float = option(0.1, **_LR)


@attrs.frozen
class MomentumOptimizer:
    """SGD with momentum (PyTorch convention): `v = m*v + g; p -= lr * v`."""

    learning_rate: float = option(0.1, **_LR)
    momentum: float = option(0.9, doc="Momentum factor.", checks=(in_range(0.0, 1.0, high_open=True),))


@attrs.frozen
class NesterovOptimizer(MomentumOptimizer):
    """Nesterov momentum (PyTorch convention): `v = m*v + g; p -= lr * (g + m*v)`."""


@attrs.frozen
class AdamOptimizer:
    """Adam with bias correction."""

    learning_rate: float = option(0.001, **_LR)
    beta1: float = option(0.9, doc="Decay of the first moment.", checks=(in_range(0.0, 1.0, high_open=True),))
    beta2: float = option(0.999, doc="Decay of the second moment.", checks=(in_range(0.0, 1.0, high_open=True),))
    epsilon: float = option(1e-8, doc="Added to the denominator.", checks=(positive,))


@attrs.frozen
class AdamWOptimizer(AdamOptimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""

    weight_decay: float = option(0.01, doc="Decoupled decay: `p -= lr * weight_decay * p`.",
                                 checks=(non_negative,))


_WARMUP = dict(doc="Epochs of linear warm-up from 0 to the scheduled rate (may be fractional).",
               checks=(non_negative,))


@attrs.frozen
class ConstantSchedule:
    """The base learning rate throughout."""

    warmup_epochs: float = option(0.0, **_WARMUP)


@attrs.frozen
class StepSchedule:
    """Multiply the rate by `gamma` every `step_epochs` epochs."""

    step_epochs: int = option(doc="Epochs between decays.", checks=(positive,))
    gamma: float = option(0.1, doc="Decay factor.", checks=(in_range(0.0, 1.0, low_open=True),))
    warmup_epochs: float = option(0.0, **_WARMUP)


@attrs.frozen
class ExponentialSchedule:
    """Multiply the rate by `gamma` each epoch (applied smoothly per step)."""

    gamma: float = option(doc="Decay factor per epoch.", checks=(in_range(0.0, 1.0, low_open=True),))
    warmup_epochs: float = option(0.0, **_WARMUP)


@attrs.frozen
class CosineSchedule:
    """Cosine annealing from the base rate to `min_lr` over the whole run."""

    min_lr: float = option(0.0, doc="Rate at the end of training.", checks=(non_negative,))
    warmup_epochs: float = option(0.0, **_WARMUP)


@attrs.frozen
class OneCycleSchedule:
    """One-cycle policy (PyTorch's OneCycleLR, cosine): the base rate is the peak."""

    pct_start: float = option(0.3, doc="Share of the run spent increasing the rate.",
                              checks=(in_range(0.0, 1.0, low_open=True, high_open=True),))
    div_factor: float = option(25.0, doc="Initial rate = peak / div_factor.", checks=(positive,))
    final_div_factor: float = option(1e4, doc="Final rate = initial rate / final_div_factor.",
                                     checks=(positive,))



@attrs.frozen
class RegularizationSpec:
    """Penalties and constraints; 0 turns each one off."""

    l2: float = option(0.0, doc=(
        "The tutorial's L2: `(l2 / n) * W` is added to each weight gradient, n the samples in "
        "the batch (the last batch of an epoch may be smaller than `batch_size`)."),
        checks=(non_negative,))
    weight_decay: float = option(0.0, doc=(
        "Decoupled weight decay for any optimizer: `W -= lr * weight_decay * W` each step."),
        checks=(non_negative,))
    max_norm: float = option(0.0, doc=(
        "Max-norm constraint: each unit's incoming weight vector is rescaled to at most "
        "this L2 norm after every step (0 = off)."), checks=(non_negative,))
    clip_norm: float = option(0.0, doc=(
        "Clip gradients to this global L2 norm before the step (0 = off)."),
        checks=(non_negative,))


@attrs.frozen
class EarlyStoppingSpec:
    """Stop when the validation metric stops improving; `patience = 0` turns it off."""

    patience: int = option(0, doc="Epochs without improvement before stopping (0 = off).",
                           checks=(non_negative,))
    metric: str = option("accuracy", doc=(
        "Validation metric watched: `accuracy` or `loss` (classification); `loss`, `rmse`, "
        "`mae` or `r2` (regression, averaged over the targets, in the targets' own units); "
        "a regression spec with early stopping must name one of these. `train_loss` (either "
        "task) watches the epoch's mean training loss instead and needs no validation set "
        "(scikit-learn's default rule: all the data trains, the run still stops by itself)."),
        checks=(one_of("accuracy", "loss", "rmse", "mae", "r2", "train_loss"),))
    min_delta: float = option(0.0, doc="Smallest change that counts as an improvement.",
                              checks=(non_negative,))
    restore_best: bool = option(True, doc="Restore the weights of the best epoch at the end.")


@attrs.frozen
class AveragingSpec:
    """Weight averaging (as in SWA, Izmailov et al. 2018): the trained weights are the mean
    of the weights at the end of each of the last `last_epochs` epochs; 0 = off.

    The history's per-epoch figures are those of the running weights; the
    evaluation scores the averaged ones. Not with batch normalisation (its
    statistics would not match the averaged weights) or early stopping.
    """

    last_epochs: int = option(0, doc="Epochs at the end of training whose weights are "
                              "averaged (0 = off; 1 = the last epoch's weights, no averaging).",
                              checks=(non_negative,))


@attrs.frozen
class TrainSpec:
    """The `[train]` table: how the network is fitted."""

    epochs: int = option(doc="Passes over the training set.", checks=(in_range(1, 100_000),))
    batch_size: int = option(128, doc="Samples per mini-batch.", checks=(in_range(1, 1_000_000),))
    precision: str = option("float32", doc="Floating-point type of the computation.",
                            checks=(one_of("float32", "float64"),))
    loss: object = option(CrossEntropyLoss(), doc="Loss function.", tagged=Tagged("type", _registered("loss")))
    optimizer: object = option(SgdOptimizer(), doc="Optimizer.", tagged=Tagged("type", _registered("optimizer")))
    schedule: object = option(ConstantSchedule(), doc="Learning-rate schedule.",
                              tagged=Tagged("type", _registered("schedule")))
    regularization: RegularizationSpec = option(RegularizationSpec(), doc="Regularisation.")
    early_stopping: EarlyStoppingSpec = option(EarlyStoppingSpec(), doc="Early stopping.")
    averaging: AveragingSpec = option(AveragingSpec(), doc="Weight averaging over the last epochs.")


# ---------------------------------------------------------------- evaluate


@attrs.frozen
class EvaluateSpec:
    """The `[evaluate]` table: how the trained model is scored."""

    split: str = option("test", doc="Split scored for the headline metrics.",
                        checks=(one_of("test", "validation"),))
    batch_size: int = option(10000, doc="Samples per inference batch.", checks=(positive,))
    misclassified: int = option(36, doc="Misclassified examples kept for the error report.",
                                checks=(non_negative,))


# ---------------------------------------------------------------- the spec


def name_of(choice: object) -> str:
    """The registered name of a layer, loss, optimizer, schedule or source object."""
    from mlpspec import registry
    return registry.name_of(choice)


@attrs.frozen
class Spec:
    """A whole spec file."""

    spec_version: int = option(doc=f"Version of the spec language; this mlpspec reads {SPEC_VERSION}.",
                               checks=(one_of(SPEC_VERSION),))  # type: ignore[arg-type]
    name: str = option(doc="Name of the experiment (used for the run folder).",
                       checks=(matches(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}",
                                       "letters, digits, '_', '.' or '-', at most 100, "
                                       "starting with a letter or digit"),))
    data: DataSpec = option(doc="The dataset.")
    network: NetworkSpec = option(doc="The network.")
    train: TrainSpec = option(doc="Training.")
    task: str = option("classification", doc=(
        "What the network predicts: `classification` (one class label per sample) or "
        "`regression` (one or more real-valued targets per sample)."),
        checks=(one_of("classification", "regression"),))
    seed: int = option(0, doc="Root seed: every random choice derives from it.",
                       checks=(in_range(0, 2**63 - 1),))
    evaluate: EvaluateSpec = option(EvaluateSpec(), doc="Evaluation.")
