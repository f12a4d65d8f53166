"""One training step, worked by hand: plain SGD with L2, clipping, weight decay, max-norm.

The network is one dense layer, 2 inputs -> 2 outputs, float64, with weights
set by hand; the loss is mse.v1 (value = mean_i 0.5 sum_k (Z - T)^2, dZ = (Z - T) / n)
on a batch of two samples; lr = 0.1. Every expected number below is worked out
in the comments and written as literals or plain arithmetic on literals.

    X  = [[1, 2], [3, -1]]      T  = [[1, 0], [0, 1]]
    W0 = [[0.5, -1], [0.25, 2]] b0 = [0.1, -0.2]
    Z  = X W0 + b0 = [[1 + 0.5 + 0.1, -1 + 4 - 0.2], [1.5 - 0.25 + 0.1, -3 - 2 - 0.2]]
                   = [[1.1, 2.8], [1.35, -5.2]]
    Z - T = [[0.1, 2.8], [1.35, -6.2]]          dZ = (Z - T) / 2 = [[0.05, 1.4], [0.675, -3.1]]
    loss  = 0.5 (0.01 + 7.84 + 1.8225 + 38.44) / 2 = 12.028125
    dW = X^T dZ = [[1*0.05 + 3*0.675, 1*1.4 + 3*(-3.1)], [2*0.05 - 1*0.675, 2*1.4 - 1*(-3.1)]]
                = [[2.075, -7.9], [-0.575, 5.9]]
    db = column sums of dZ = [0.725, -1.7]
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpspec.data.prepare import Prepared, Scaling, one_hot
from mlpspec.errors import TrainingError
from mlpspec.nn.layers import Network
from mlpspec.nn.losses import MeanSquaredError
from mlpspec import registry
from mlpspec.spec import model, parse_spec
from mlpspec.train import LossNotFinite, build_network, fit, train_step

from conftest import npz_spec

X = np.array([[1.0, 2.0], [3.0, -1.0]])
T = np.array([[1.0, 0.0], [0.0, 1.0]])
W0 = np.array([[0.5, -1.0], [0.25, 2.0]])
b0 = np.array([0.1, -0.2])
LR = 0.1
DW = np.array([[2.075, -7.9], [-0.575, 5.9]])
DB = np.array([0.725, -1.7])


def sgd():
    return registry.make("optimizer", "sgd.v1", {"learning_rate": LR})


def network() -> Network:
    net = registry.make_network([("dense.v1", {"units": 2})], 2, np.random.default_rng(0), np.float64)
    net.load_state_dict({"layers.0.W": W0, "layers.0.b": b0})
    return net


def step(**regularization) -> tuple[Network, float, np.ndarray]:
    net = network()
    value, Z = train_step(network=net, loss=MeanSquaredError(), optimizer=sgd(),
                          regularization=model.RegularizationSpec(**regularization),
                          X=X, T=T, lr=LR)
    return net, value, Z.copy()


def check(net: Network, W: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(net.layers[0].params["W"], W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.layers[0].params["b"], b, rtol=0, atol=1e-12)


def test_plain_sgd_step():
    net, value, Z = step()
    assert value == pytest.approx(12.028125, abs=1e-12)
    np.testing.assert_allclose(Z, [[1.1, 2.8], [1.35, -5.2]], atol=1e-12)
    # W1 = W0 - 0.1 dW,  b1 = b0 - 0.1 db
    check(net, [[0.5 - 0.2075, -1.0 + 0.79], [0.25 + 0.0575, 2.0 - 0.59]],
          [0.1 - 0.0725, -0.2 + 0.17])


def test_l2_adds_l2_over_batch_times_w_to_the_weight_gradient_only():
    net, _, _ = step(l2=0.4)
    # dW += (0.4 / 2) W0 = [[0.1, -0.2], [0.05, 0.4]]  ->  dW' = [[2.175, -8.1], [-0.525, 6.3]]
    check(net, [[0.5 - 0.2175, -1.0 + 0.81], [0.25 + 0.0525, 2.0 - 0.63]],
          [0.1 - 0.0725, -0.2 + 0.17])  # the bias step is the plain one


def test_clipping_scales_all_gradients_to_the_global_norm():
    net, _, _ = step(clip_norm=5.0)
    norm = math.sqrt(2.075**2 + 7.9**2 + 0.575**2 + 5.9**2 + 0.725**2 + 1.7**2)  # 10.2602...
    scale = 5.0 / norm
    check(net, W0 - LR * scale * DW, b0 - LR * scale * DB)


def test_clipping_leaves_a_gradient_under_the_norm_alone():
    net, _, _ = step(clip_norm=11.0)  # the norm is 10.26
    check(net, W0 - LR * DW, b0 - LR * DB)


def test_weight_decay_shrinks_the_weights_after_the_update():
    net, _, _ = step(weight_decay=0.5)
    # W2 = (1 - 0.1 * 0.5) W1 = 0.95 W1; the bias is not decayed
    check(net, [[0.95 * 0.2925, 0.95 * -0.21], [0.95 * 0.3075, 0.95 * 1.41]], [0.0275, -0.03])


def test_max_norm_rescales_each_units_incoming_column():
    net, _, _ = step(max_norm=1.0)
    # W1 = [[0.2925, -0.21], [0.3075, 1.41]]: column 0 has norm sqrt(0.1801125) = 0.424
    # (kept), column 1 sqrt(0.0441 + 1.9881) = 1.4256 (rescaled to 1). Rows would differ:
    # row 1 has norm 1.443, row 0 0.36.
    norm = math.sqrt(0.21**2 + 1.41**2)
    check(net, [[0.2925, -0.21 / norm], [0.3075, 1.41 / norm]], [0.0275, -0.03])


def test_all_regularisers_together_in_the_documented_order():
    net, _, _ = step(l2=0.4, clip_norm=5.0, weight_decay=0.5, max_norm=1.0)
    # 1. L2:   dW' = [[2.175, -8.1], [-0.525, 6.3]]
    # 2. clip: norm = sqrt(2.175^2 + 8.1^2 + 0.525^2 + 6.3^2 + 0.725^2 + 1.7^2) = 10.664
    norm = math.sqrt(2.175**2 + 8.1**2 + 0.525**2 + 6.3**2 + 0.725**2 + 1.7**2)
    s = 5.0 / norm
    # 3. SGD, 4. decay by 0.95
    W = [[0.95 * (0.5 - LR * s * 2.175), 0.95 * (-1.0 - LR * s * -8.1)],
         [0.95 * (0.25 - LR * s * -0.525), 0.95 * (2.0 - LR * s * 6.3)]]
    b = [0.1 - LR * s * 0.725, -0.2 - LR * s * -1.7]
    # 5. max-norm 1 per column: column 0 = [0.3859, 0.2612] (norm 0.466, kept),
    #    column 1 = [-0.5876, 1.6193] (norm 1.7226, rescaled)
    column1 = math.sqrt(W[0][1] ** 2 + W[1][1] ** 2)
    assert column1 > 1.0 > math.sqrt(W[0][0] ** 2 + W[1][0] ** 2)
    W = [[W[0][0], W[0][1] / column1], [W[1][0], W[1][1] / column1]]
    check(net, W, b)


def test_a_non_finite_loss_raises_before_any_weight_changes():
    net = network()
    with pytest.raises(LossNotFinite, match="the loss became") as info, \
            np.errstate(over="ignore", invalid="ignore"):
        train_step(network=net, loss=MeanSquaredError(), optimizer=sgd(),
                   regularization=model.RegularizationSpec(), X=X * 1e200, T=T, lr=LR)
    assert isinstance(info.value, TrainingError)
    check(net, W0, b0)


def test_the_step_takes_keyword_arguments_only():
    with pytest.raises(TypeError):
        train_step(network(), MeanSquaredError(), sgd(), model.RegularizationSpec(), X, T, LR)


# ------------------------------------------------------------ through fit

SPEC = npz_spec("step", inputs=2, seed=5) + """
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
batch_size = 8
precision = "float64"
[train.loss]
type = "mse.v1"
[train.optimizer]
type = "sgd.v1"
learning_rate = 0.5
"""


def tiny_data() -> Prepared:
    """8 samples of 2 features, 3 classes; one batch is the whole set, so fit takes one step."""
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 2.0, (8, 2))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    empty = np.zeros((0, 2))
    return Prepared(x, y, one_hot(y, 3, np.dtype(np.float64)), empty, y[:0], x, y, 3,
                    ("a", "b", "c"), (2,), Scaling("none", np.array(0.0), np.array(1.0)))


@pytest.mark.parametrize("options", [
    (), ("l2=3.0",), ("clip_norm=0.05",), ("weight_decay=0.4",), ("max_norm=0.6",),
    ("l2=3.0", "clip_norm=0.05", "weight_decay=0.4", "max_norm=0.6"),
])
def test_fit_takes_exactly_the_step_the_unit_takes(options):
    """fit on one batch == train_step from the same initial weights with the spec's settings."""
    spec = parse_spec(SPEC, "step.toml", [f"train.regularization.{o}" for o in options])
    data = tiny_data()
    trained = fit(spec, data).network.state_dict()

    net = build_network(spec)
    initial = net.state_dict()
    train_step(network=net, loss=MeanSquaredError(), optimizer=sgd(),
               regularization=spec.train.regularization, X=data.x_train, T=data.t_train, lr=0.5)
    expected = net.state_dict()
    for name in expected:
        # fit shuffles the batch: the sums run in another order, so not bit for bit
        np.testing.assert_allclose(trained[name], expected[name], rtol=0, atol=1e-13, err_msg=name)
    # and each option did change the step (or no option: plain SGD moved the weights)
    if options:
        plain = parse_spec(SPEC, "step.toml")
        untouched = fit(plain, data).network.state_dict()
        assert any(not np.allclose(trained[name], untouched[name], rtol=0, atol=1e-9)
                   for name in ("layers.0.W", "layers.2.W"))
    else:
        assert not np.array_equal(trained["layers.0.W"], initial["layers.0.W"])
