"""The training loop: mini-batch descent over a spec's network, epoch by epoch.

    result = fit(spec, data, on_epoch=print)

Everything random draws from generators derived from the spec's seed
(`mlpspec.rng`): initial weights ("init"), batch order ("shuffle"), dropout
masks (the layers' own, spawned from "init") and the distortions of the
training images (`[data.augment]`; one generator per epoch, "augment/epoch-N",
split in two halves distorted at once with child generators, so a resumed
run needs no augmentation state). The same spec and seed give
bit-identical weights on the same machine with the same BLAS thread count
(`mlpspec.compute`).

One step (`train_step`, the unit `fit` calls per batch): forward, loss,
backward, then the regularisation the spec asks for (the tutorial's L2 in the
gradient, gradient clipping), the optimizer's update at the scheduled learning
rate, decoupled weight decay and max-norm.

Weight averaging (`[train.averaging]`) keeps a running sum of the weights at
the end of each of the last epochs; the result is their mean. The sum is part
of the checkpoint, so an interrupted run resumes with it.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence

import attrs
import numpy as np

from mlpspec import registry, rng
from mlpspec.checkpoint import Checkpoint, EpochRecord
from mlpspec.data.augment import Augmenter, is_active
from mlpspec.data.prepare import Prepared, Scaling
from mlpspec.errors import TrainingError
from mlpspec.nn.layers import Dropout, Network
from mlpspec.nn.optim import Optimizer
from mlpspec.nn.regularize import add_l2_gradient, apply_max_norm, clip_grad_norm, decay_weights
from mlpspec.nn.schedules import Schedule
from mlpspec.scoring import output_loss, regression_metrics
from mlpspec.spec import model


@attrs.frozen(eq=False)
class TrainResult:
    """The trained network (best epoch's weights when early stopping restored them)."""

    network: Network
    history: tuple[EpochRecord, ...]
    best_epoch: int
    stopped_early: bool
    seconds: float


# The engines, each built by its registry entry from exactly its spec keys.

def build_network(spec: model.Spec) -> Network:
    """The spec's network with freshly initialised weights."""
    layers = [registry.build(layer) for layer in spec.network.layers]
    return Network.build(layers, spec.network.inputs, rng.generator(spec.seed, "init"),
                         np.dtype(spec.train.precision))


def build_loss(spec: model.Spec, data: Prepared | None = None):
    """The spec's loss; `balanced` class weights are counted on `data`'s training labels."""
    loss = registry.build(spec.train.loss)
    if isinstance(spec.train.loss, model.CrossEntropyLoss) and spec.train.loss.balanced:
        if data is None:
            raise ValueError("balanced class weights need the training data")
        loss.balance(np.bincount(data.y_train, minlength=data.classes))
    return loss


def build_schedule(spec: model.Spec) -> Schedule:
    """The learning-rate schedule, starting from (one-cycle: peaking at) the optimizer's rate."""
    return registry.build(spec.train.schedule, spec.train.optimizer.learning_rate)


def build_optimizer(spec: model.Spec) -> Optimizer:
    return registry.build(spec.train.optimizer)


def evaluate_split(network: Network, loss, X: np.ndarray, y: np.ndarray,
                   batch_size: int = 10000) -> tuple[float, float]:
    """Mean loss and accuracy of `network` on `X (n, features)` with labels `y (n,)`."""
    if len(X) == 0:
        return math.nan, math.nan
    Z = network.predict(X, batch_size)
    return output_loss(loss, Z, y), float(np.mean(Z.argmax(axis=1) == y))


def evaluate_regression(network: Network, loss, X: np.ndarray, y: np.ndarray,
                        target_scaling: Scaling, batch_size: int = 10000) -> tuple[float, dict]:
    """Mean loss (on the scaled targets) and `scoring.regression_metrics` (in original units)
    of `network` on `X (n, features)` with raw targets `y (n, k)`; NaNs for no samples."""
    if len(X) == 0:
        return math.nan, {"rmse": math.nan, "mae": math.nan, "r2": math.nan}
    Z = network.predict(X, batch_size)
    return (output_loss(loss, Z, y, target_scaling),
            regression_metrics(y, target_scaling.invert(Z), range(y.shape[1])))


class Interrupted(Exception):
    """Training was interrupted (Ctrl-C); `checkpoint` is the last finished epoch, if any."""

    def __init__(self, checkpoint: Checkpoint | None):
        super().__init__("training interrupted")
        self.checkpoint = checkpoint


# Overflow is reported as divergence, with advice, not as numpy warnings.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def fit(spec: model.Spec, data: Prepared, *,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_step: Callable[[int, int, float, float], None] | None = None,
        resume: Checkpoint | None = None) -> TrainResult:
    """Train the spec's network on `data`; raise `TrainingError` if it diverges.

    `on_epoch(record)` is called after every epoch and `on_step(epoch, batch,
    loss, accuracy)` after every optimizer step, with the epoch's running mean
    loss and accuracy so far (for progress bars; the accuracy is NaN for
    regression). Regression (`data.target_scaling` set) trains on the
    standardised targets `data.t_train (n, k)`; each epoch records the
    validation RMSE, MAE and R² in the targets' original units, which early
    stopping may watch. A KeyboardInterrupt
    becomes `Interrupted` carrying a checkpoint of the last finished epoch;
    `fit(..., resume=checkpoint)` continues from it and ends with the same
    weights as an uninterrupted run.
    """
    train = spec.train
    network = build_network(spec)
    loss = build_loss(spec, data)
    optimizer = build_optimizer(spec)
    schedule = build_schedule(spec)
    shuffle = rng.generator(spec.seed, "shuffle")
    dropouts = [layer for layer in network.layers if isinstance(layer, Dropout)]

    X_all, T_all, y_all = data.x_train, data.t_train, data.y_train
    n = len(X_all)
    batch_size = min(train.batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = train.epochs * steps_per_epoch
    params = [array for _, array in network.parameters()]
    early = train.early_stopping
    regression = data.target_scaling is not None
    augmenter = _augmenter(spec, data)
    average_from = max(0, train.epochs - train.averaging.last_epochs)  # averaged: epochs after this one

    state = resume or Checkpoint(0, 0, [], {}, {}, {}, [], -math.inf, 0, None, 0, 0.0)
    average: dict[str, np.ndarray] = {}
    if resume is not None:
        network.load_state_dict(resume.network)
        optimizer.load_state_dict(resume.optimizer)
        average = {name: total.astype(np.float64) for name, total in resume.averaged.items()}
        shuffle.bit_generator.state = resume.shuffle_rng
        for layer, saved in zip(dropouts, resume.dropout_rngs):
            layer.rng.bit_generator.state = saved
    history = list(state.history)
    best_score, best_epoch, best_state, waited = (state.best_score, state.best_epoch,
                                                  state.best_network, state.waited)
    last_checkpoint = resume
    stopped_early = False
    started = time.perf_counter() - state.seconds
    step = state.step
    helper = None if augmenter is None else ThreadPoolExecutor(1, thread_name_prefix="mlpspec-augment")
    try:
        for epoch in range(state.epoch + 1, train.epochs + 1):
            epoch_start = time.perf_counter()
            order = shuffle.permutation(n)
            X_epoch = X_all
            if augmenter is not None:
                X_epoch = _distorted(augmenter, X_all, rng.generator(spec.seed, f"augment/epoch-{epoch}"),
                                     helper)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, batch_size):
                index = order[start:start + batch_size]
                lr = schedule.lr_at(step, total_steps, steps_per_epoch)
                try:
                    value, Z = train_step(network=network, loss=loss, optimizer=optimizer,
                                          regularization=train.regularization,
                                          X=X_epoch[index], T=T_all[index], lr=lr)
                except LossNotFinite as error:
                    raise _diverged(epoch, step - (epoch - 1) * steps_per_epoch + 1,
                                    error.value, lr) from None
                loss_sum += value * len(index)
                if not regression:
                    correct += int(np.count_nonzero(Z.argmax(axis=1) == y_all[index]))
                step += 1
                if on_step is not None:
                    seen = start + len(index)
                    on_step(epoch, step - (epoch - 1) * steps_per_epoch, loss_sum / seen,
                            math.nan if regression else correct / seen)
            if regression:
                val_loss, figures = evaluate_regression(network, loss, data.x_val, data.y_val,
                                                        data.target_scaling)
                record = EpochRecord(epoch, loss_sum / n, math.nan, val_loss, math.nan, lr,
                                     time.perf_counter() - epoch_start, figures["rmse"],
                                     figures["mae"], figures["r2"])
            else:
                val_loss, val_accuracy = evaluate_split(network, loss, data.x_val, data.y_val)
                record = EpochRecord(epoch, loss_sum / n, correct / n, val_loss, val_accuracy, lr,
                                     time.perf_counter() - epoch_start)
            if not math.isfinite(record.train_loss) or not _finite_weights(params):
                raise _diverged(epoch, steps_per_epoch, record.train_loss, lr)
            history.append(record)
            if epoch > average_from:
                _accumulate(average, network.state_dict())
            if early.patience and (len(data.x_val) or early.metric == "train_loss"):
                score = _score(record, early.metric, regression)
                if score > best_score + early.min_delta:
                    best_score, best_epoch, waited = score, epoch, 0
                    if early.restore_best:
                        best_state = network.state_dict()
                else:
                    waited += 1
                    stopped_early = waited >= early.patience
            last_checkpoint = Checkpoint(
                epoch, step, list(history), network.state_dict(), optimizer.state_dict(),
                shuffle.bit_generator.state, [d.rng.bit_generator.state for d in dropouts],
                best_score, best_epoch, best_state, waited, time.perf_counter() - started,
                {name: total.copy() for name, total in average.items()})
            if on_epoch is not None:
                on_epoch(record)
            if stopped_early:
                break
    except KeyboardInterrupt:
        raise Interrupted(last_checkpoint) from None
    finally:
        if helper is not None:
            helper.shutdown(wait=True)
    if best_state is not None:
        network.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    if average:
        count = len(history) - average_from
        network.load_state_dict({name: total / count for name, total in average.items()})
    return TrainResult(network, tuple(history), best_epoch, stopped_early,
                       time.perf_counter() - started)


class LossNotFinite(TrainingError):
    """A step's loss came out NaN or infinite; the step changed nothing."""

    def __init__(self, value: float):
        super().__init__(f"the loss became {value}")
        self.value = value


def train_step(*, network: Network, loss, optimizer, regularization: model.RegularizationSpec,
               X: np.ndarray, T: np.ndarray, lr: float) -> tuple[float, np.ndarray]:
    """One optimizer step on the batch `X (batch, inputs)` with targets `T (batch, ...)`.

    In this order: forward, loss, backward; the tutorial's L2 on the dense
    weights' gradients, `dW += (l2 / batch) W`; clipping of all gradients to
    the global L2 norm `clip_norm`; the optimizer's update at `lr`; decoupled
    weight decay `W -= lr * weight_decay * W`; max-norm (each unit's incoming
    weight column rescaled to norm <= max_norm). A setting of 0 skips its part.

    Returns the batch's mean loss (before the update) and the outputs
    `Z (batch, classes)`, valid until the network's next training forward.
    Raises `LossNotFinite` before touching any weight if the loss is NaN or
    infinite. Every argument is keyword-only, so the pieces cannot be swapped.

    With an optimizer that `FUSES` (sgd.v1, momentum.v1 on NumPy's own
    OpenBLAS) and no L2 or clipping, the dense weight and bias gradients are
    never written out: the optimizer folds each product (X^T dY, 1^T dY) into
    its update.
    """
    Z, backprop = network.forward(X, training=True)
    value, dZ = loss(Z, T)
    if not math.isfinite(value):
        raise LossNotFinite(value)
    # An optimizer that FUSES takes the dense weight and bias gradients as products and
    # folds each into its update (one GEMM, mlpspec.nn.blas); L2 and clipping need arrays.
    fuse = optimizer.FUSES and not regularization.l2 and not regularization.clip_norm
    _, grad_of = backprop(dZ, defer=fuse)
    # Arrays and their gradients are paired by name here, in one place.
    everything, dense = network.parameters(), network.weights()
    params, grads = [p for _, p in everything], [grad_of[name] for name, _ in everything]
    weights, weight_grads = [W for _, W in dense], [grad_of[name] for name, _ in dense]
    if regularization.l2:
        add_l2_gradient(weights=weights, grads=weight_grads, l2=regularization.l2,
                        batch_size=len(X))
    if regularization.clip_norm:
        clip_grad_norm(grads=grads, max_norm=regularization.clip_norm)
    optimizer.step(params, grads, lr)
    if regularization.weight_decay:
        decay_weights(weights=weights, lr=lr, weight_decay=regularization.weight_decay)
    if regularization.max_norm:
        apply_max_norm(weights=weights, max_norm=regularization.max_norm)
    return value, Z


def _augmenter(spec: model.Spec, data: Prepared) -> Augmenter | None:
    if not is_active(spec.data.augment):
        return None
    if len(data.sample_shape) != 2:
        shape = "x".join(map(str, data.sample_shape))
        raise TrainingError(f"data.augment: expected 2-D image samples to distort, found "
                            f"samples of shape {shape}; remove [data.augment]")
    return Augmenter(spec.data.augment, data.sample_shape, data.scaling)


def _distorted(augmenter: Augmenter, X: np.ndarray, generator: np.random.Generator,
               helper: ThreadPoolExecutor) -> np.ndarray:
    """This epoch's distorted copy of `X (n, features)`: each half on its own core.

    Between epochs BLAS is idle, so the two halves are distorted at once, the
    second in `helper`'s thread (NumPy releases the GIL in the array work).
    Each half draws from its own child of the epoch's generator, so the
    images do not depend on which thread ran first. (Distorting the next
    epoch in the background during training was measured slower: the extra
    thread takes cores from the BLAS threads, which then wait for each other.)
    """
    half = (len(X) + 1) // 2
    first, second = generator.spawn(2)
    out = np.empty_like(X)
    later = helper.submit(augmenter, X[half:], second, out[half:])
    augmenter(X[:half], first, out[:half])
    later.result()
    return out


def _accumulate(total: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> None:
    """total += state, per array, summed in float64 (a mean of many near-equal arrays)."""
    for name, array in state.items():
        if name in total:
            total[name] += array
        else:
            total[name] = array.astype(np.float64)


def _score(record: EpochRecord, metric: str, regression: bool) -> float:
    """The early-stopping score of an epoch: higher is better."""
    if metric == "train_loss":
        return -record.train_loss
    if metric == "loss":
        return -record.val_loss
    if regression:
        return {"r2": record.val_r2, "rmse": -record.val_rmse, "mae": -record.val_mae}[metric]
    return record.val_accuracy


def _finite_weights(params: Sequence[np.ndarray]) -> bool:
    return all(np.isfinite(p).all() for p in params)


def _diverged(epoch: int, step: int, value: float, lr: float) -> TrainingError:
    return TrainingError(
        f"training diverged: the loss became {value} at epoch {epoch}, step {step} "
        f"(learning rate {lr:.4g}). Try a smaller train.optimizer.learning_rate, "
        f"gradient clipping (train.regularization.clip_norm) or a warm-up "
        f"(train.schedule.warmup_epochs).")


__all__ = ["Checkpoint", "EpochRecord", "Interrupted", "TrainResult", "build_network", "evaluate_split", "fit"]
