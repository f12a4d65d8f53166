"""The training loop on small synthetic data: determinism, divergence, early stopping."""

from __future__ import annotations

import numpy as np
import pytest

from mlpspec.data.prepare import Prepared, Scaling, one_hot
from mlpspec.errors import TrainingError
from mlpspec.spec import parse_spec
from mlpspec.train import Interrupted, fit

from conftest import npz_spec, relu_mlp

SPEC = npz_spec("blobs", inputs=20, seed=3) + relu_mlp(32) + """[train]
epochs = 5
batch_size = 16
[train.optimizer]
type = "momentum.v1"
learning_rate = 0.05
"""


def blobs(seed: int = 0, n: int = 300, dtype=np.float32, noise: float = 1.0) -> Prepared:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (3, 20))

    def sample(count):
        y = rng.integers(0, 3, count)
        return (centers[y] + rng.normal(0, noise, (count, 20))).astype(dtype), y

    x_train, y_train = sample(n)
    x_val, y_val = sample(n // 3)
    x_test, y_test = sample(n // 3)
    return Prepared(x_train, y_train, one_hot(y_train, 3, np.dtype(dtype)), x_val, y_val,
                    x_test, y_test, 3, ("a", "b", "c"), (20,),
                    Scaling("none", np.array(0.0), np.array(1.0)))


def spec(*overrides: str):
    return parse_spec(SPEC, "blobs.toml", overrides)


def weights(result) -> dict[str, np.ndarray]:
    return result.network.state_dict()


def test_same_seed_gives_bit_identical_weights():
    first, second = fit(spec(), blobs()), fit(spec(), blobs())
    for name, array in weights(first).items():
        assert array.tobytes() == weights(second)[name].tobytes(), name
    assert [r.train_loss for r in first.history] == [r.train_loss for r in second.history]


def test_other_seed_gives_other_weights():
    a, b = weights(fit(spec(), blobs())), weights(fit(spec("seed=4"), blobs()))
    assert not np.array_equal(a["layers.0.W"], b["layers.0.W"])


def test_learns_and_records_history():
    result = fit(spec(), blobs())
    assert len(result.history) == 5
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.history[-1].val_accuracy > 0.9
    assert all(r.learning_rate == pytest.approx(0.05) for r in result.history)


def test_float64_on_request():
    result = fit(spec('train.precision="float64"'), blobs(dtype=np.float64))
    assert all(a.dtype == np.float64 for a in weights(result).values())
    assert weights(fit(spec(), blobs()))["layers.0.W"].dtype == np.float32


def test_divergence_names_epoch_and_step():
    with pytest.raises(TrainingError, match=r"diverged: the loss became (nan|inf) at epoch 1, "
                                            r"step \d+ \(learning rate 1e\+06\)\. Try a smaller"):
        fit(spec("train.optimizer.learning_rate=1e6", "train.regularization.l2=0.0"),
            blobs(noise=0.1))


def test_early_stopping_restores_the_best_epoch():
    noisy = blobs(noise=6.0, n=120)
    result = fit(spec("train.epochs=60", "train.early_stopping.patience=3",
                      "train.optimizer.learning_rate=0.3"), noisy)
    assert result.stopped_early
    assert len(result.history) < 60
    best = max(result.history, key=lambda r: r.val_accuracy)
    assert result.best_epoch == best.epoch
    predictions = result.network.predict(noisy.x_val).argmax(axis=1)
    assert np.mean(predictions == noisy.y_val) == best.val_accuracy


def test_max_norm_holds_after_training():
    result = fit(spec("train.regularization.max_norm=0.5", "train.optimizer.learning_rate=0.5"), blobs())
    for name, array in weights(result).items():
        if name.endswith(".W"):
            assert np.linalg.norm(array, axis=0).max() <= 0.5 + 1e-5


@pytest.mark.parametrize("optimizer", ["sgd.v1", "momentum.v1", "nesterov.v1", "adam.v1", "adamw.v1"])
@pytest.mark.parametrize("schedule", ["constant.v1", "cosine.v1", "onecycle.v1", "step.v1", "exponential.v1"])
def test_every_optimizer_and_schedule_trains(optimizer, schedule):
    lr = 0.01 if optimizer.startswith("adam") else 0.05
    settings = {"step.v1": "step_epochs = 2", "exponential.v1": "gamma = 0.8",
                "onecycle.v1": ""}.get(schedule, "warmup_epochs = 0.5")
    text = SPEC.replace('type = "momentum.v1"\nlearning_rate = 0.05',
                        f'type = "{optimizer}"\nlearning_rate = {lr}\n'
                        f'[train.schedule]\ntype = "{schedule}"\n{settings}')
    result = fit(parse_spec(text, "blobs.toml"), blobs())
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.history[-1].val_accuracy > 0.8


def test_mse_and_regularisation_train():
    result = fit(spec('train.loss={ type = "mse.v1" }', "train.regularization.l2=0.01",
                      "train.regularization.weight_decay=0.001", "train.regularization.clip_norm=1.0"),
                 blobs())
    assert result.history[-1].val_accuracy > 0.8


@pytest.mark.parametrize("interrupt_at_step", [7, 40, 55])
def test_interrupted_run_resumes_bit_for_bit(interrupt_at_step):
    overrides = ("train.epochs=4", "train.early_stopping.patience=2",
                 'network.layers[1]={ type = "dropout.v1", rate = 0.3 }',
                 'train.optimizer={ type = "adam.v1", learning_rate = 0.01 }',
                 'train.schedule={ type = "cosine.v1" }')
    data = blobs()
    reference = fit(spec(*overrides), data)

    steps_per_epoch = 300 // 16 + 1

    def interrupt(epoch, batch, loss, accuracy):
        if (epoch - 1) * steps_per_epoch + batch == interrupt_at_step:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        fit(spec(*overrides), data, on_step=interrupt)
    checkpoint = info.value.checkpoint
    assert checkpoint is None or checkpoint.epoch == (interrupt_at_step - 1) // steps_per_epoch
    resumed = fit(spec(*overrides), data, resume=checkpoint)
    for name, array in weights(reference).items():
        assert array.tobytes() == weights(resumed)[name].tobytes(), name
    assert [r.val_loss for r in resumed.history] == [r.val_loss for r in reference.history]


def test_l2_shrinks_the_weights_by_the_hand_computed_amount_through_fit():
    """One plain-SGD step over the whole set: with L2 the weights end exactly
    lr * (l2 / n) * W0 lower than without it (the data gradient is the same)."""
    data = blobs(n=64)
    one_step = ("train.epochs=1", "train.batch_size=64", 'train.optimizer={type="sgd.v1", learning_rate=0.1}')
    plain = weights(fit(spec(*one_step), data))
    with_l2 = weights(fit(spec(*one_step, "train.regularization.l2=5.0"), data))
    from mlpspec.train import build_network

    initial = build_network(spec(*one_step)).state_dict()
    for name in ("layers.0.W", "layers.2.W"):
        expected = plain[name] - 0.1 * (5.0 / 64) * initial[name]
        np.testing.assert_allclose(with_l2[name], expected, rtol=1e-5, atol=1e-6)
    for name in ("layers.0.b", "layers.2.b"):  # biases carry no L2
        np.testing.assert_array_equal(with_l2[name], plain[name])
