"""Central-difference gradient checks, in float64, for every layer and loss.

`test_every_registered_layer` and `test_every_registered_loss` walk
`mlpspec.registry`, so a newly registered layer or loss is checked without
being listed here; the other tests add settings and edge cases.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpspec import registry
from mlpspec.registry import make_layer, make_network


def loss_named(name, **keys):
    return registry.make("loss", name, keys)


F64 = np.float64
H = 1e-6


def numeric_gradient(f, A: np.ndarray) -> np.ndarray:
    """d f() / d A by central differences, perturbing A in place."""
    grad = np.zeros_like(A)
    for index in np.ndindex(A.shape):
        saved = A[index]
        A[index] = saved + H
        up = f()
        A[index] = saved - H
        down = f()
        A[index] = saved
        grad[index] = (up - down) / (2 * H)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """Max abs difference over the largest magnitude; gradients that are truly
    zero (a dense bias feeding BatchNorm) are compared against a floor of 1e-3,
    well above the ~1e-10 round-off of the central difference."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-3))


def away_from_zero(rng, shape, margin=0.1):
    """Inputs with |x| >= margin, so ReLU-like kinks are never crossed by H."""
    X = rng.uniform(margin, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return X


def check_layer(layer, X, forward_kwargs=None, rtol=1e-6, replay=None):
    """Compare backprop with numeric gradients of sum(Y * R) wrt X and every param.

    `replay`, a generator the layer draws from (dropout's), is reset before
    every forward so each one draws the same numbers.
    """
    forward_kwargs = forward_kwargs or {}
    rng = np.random.default_rng(1)
    saved = replay.bit_generator.state if replay is not None else None

    def forward():
        if replay is not None:
            replay.bit_generator.state = saved
        return layer.forward(X, training=True, **forward_kwargs)

    Y, backprop = forward()
    R = rng.standard_normal(Y.shape)  # random projection: checks every output, not just their sum
    dX, grads = backprop(R.copy())
    dX, grads = dX.copy(), {k: g.copy() for k, g in grads.items()}

    def objective():
        return float(np.sum(forward()[0] * R))

    assert relative_error(dX, numeric_gradient(objective, X)) < rtol
    assert set(grads) == set(layer.params)
    for name, param in layer.params.items():
        assert relative_error(grads[name], numeric_gradient(objective, param)) < rtol, name


@pytest.mark.parametrize("init", ["he_normal", "normal", "glorot_uniform"])
def test_dense(init):
    rng = np.random.default_rng(0)
    layer = make_layer("dense.v1", {"units": 4, "init": init, "std": 0.5}, 5, rng, F64)
    layer.params["b"][:] = rng.standard_normal(4)  # non-zero bias
    check_layer(layer, rng.standard_normal((6, 5)))


@pytest.mark.parametrize(
    "type_name, params",
    [
        ("relu.v1", {}),
        ("leaky_relu.v1", {"alpha": 0.01}),
        ("leaky_relu.v1", {"alpha": 0.3}),
        ("sigmoid.v1", {}),
        ("tanh.v1", {}),
        ("gelu.v1", {}),
    ],
)
def test_activation(type_name, params):
    rng = np.random.default_rng(0)
    layer = make_layer(type_name, params, 5, rng, F64)
    check_layer(layer, away_from_zero(rng, (6, 5)))


def test_gelu_matches_tanh_approximation_values():
    layer = make_layer("gelu.v1", {}, 3, np.random.default_rng(0), F64)
    X = np.array([[-3.0, 0.0, 1.0]])
    c = np.sqrt(2 / np.pi)
    expected = 0.5 * X * (1 + np.tanh(c * (X + 0.044715 * X**3)))
    np.testing.assert_allclose(layer.forward(X, training=False)[0], expected, rtol=1e-15)
    assert abs(expected[0, 2] - 0.8411919906) < 1e-9  # PyTorch gelu(1.0, approximate="tanh")


def test_dropout_with_fixed_mask():
    rng = np.random.default_rng(0)
    layer = make_layer("dropout.v1", {"rate": 0.4}, 5, rng, F64)
    mask = rng.random((6, 5)) >= 0.4
    check_layer(layer, rng.standard_normal((6, 5)), {"mask": mask})


@pytest.mark.parametrize("n_samples", [3, 7])
def test_batchnorm_training_mode(n_samples):
    rng = np.random.default_rng(0)
    layer = make_layer("batchnorm.v1", {}, 4, rng, F64)
    layer.params["gamma"][:] = rng.uniform(0.5, 2.0, 4)
    layer.params["beta"][:] = rng.standard_normal(4)
    X = rng.standard_normal((n_samples, 4)) * 3 + 1
    check_layer(layer, X)


#: Values for the keys a layer's spec requires (it has no default for them).
REQUIRED_KEYS = {"dense.v1": {"units": 4}, "dropout.v1": {"rate": 0.4}}


@pytest.mark.parametrize("name", list(registry.LAYERS))
def test_every_registered_layer(name):
    """Each registered layer with its spec defaults, parameters moved off their initial values."""
    rng = np.random.default_rng(0)
    layer = make_layer(name, REQUIRED_KEYS.get(name, {}), 5, rng, F64)
    for param in layer.params.values():
        param += rng.normal(0.0, 0.5, param.shape)  # e.g. a non-zero bias, gamma != 1
    check_layer(layer, away_from_zero(rng, (6, 5)), replay=vars(layer).get("rng"))


@pytest.mark.parametrize("name", list(registry.LOSSES))
def test_every_registered_loss(name):
    """Each registered loss with its spec defaults: on one-hot targets if it serves
    classification, on real-valued targets if it serves regression."""
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((6, 4)) * 3
    tasks = registry.LOSSES[name].tasks
    assert tasks and set(tasks) <= {"classification", "regression"}
    if "classification" in tasks:
        check_loss(loss_named(name), Z, np.eye(4)[rng.integers(0, 4, 6)])
    if "regression" in tasks:
        T = rng.standard_normal((6, 4)) * 2
        check_loss(loss_named(name), Z, T)


def check_loss(loss, Z, T, rtol=1e-6):
    value, dZ = loss(Z, T)
    dZ = dZ.copy()
    assert isinstance(value, float)
    numeric = numeric_gradient(lambda: loss(Z, T)[0], Z)
    assert relative_error(dZ, numeric) < rtol


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_cross_entropy(label_smoothing, one_hot):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((6, 4)) * 3
    labels = rng.integers(0, 4, 6)
    T = np.eye(4)[labels] if one_hot else labels
    check_loss(loss_named("softmax_cross_entropy.v1", label_smoothing=label_smoothing), Z, T)


def test_cross_entropy_labels_and_one_hot_agree_and_value_by_hand():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((5, 3))
    labels = rng.integers(0, 3, 5)
    eps = 0.2
    loss = loss_named("softmax_cross_entropy.v1", label_smoothing=eps)
    v1, d1 = loss(Z, labels)
    v1, d1 = v1, d1.copy()
    v2, d2 = loss(Z, np.eye(3)[labels])
    assert v1 == pytest.approx(v2, rel=1e-12)
    np.testing.assert_allclose(d1, d2, rtol=1e-12, atol=1e-15)
    P = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    T = (1 - eps) * np.eye(3)[labels] + eps / 3
    assert v1 == pytest.approx(-np.mean(np.sum(T * np.log(P), axis=1)), rel=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    loss = loss_named("softmax_cross_entropy.v1")
    Z = np.array([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]])
    value, dZ = loss(Z, np.array([0, 2]))
    assert np.isfinite(value) and np.all(np.isfinite(dZ))
    assert value == pytest.approx(500.0)  # sample 0 costs 0, sample 1 costs 1000


@pytest.mark.parametrize("columns", [10, 100])
def test_cross_entropy_row_maximum_is_numpys_for_narrow_and_wide_outputs(columns):
    """The loss takes each row's maximum down the columns of a transposed copy when the
    rows are short: the same values as Z.max(axis=1), NaN and infinities included."""
    from mlpspec.nn.losses import _row_max

    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        Z = rng.standard_normal((33, columns)).astype(dtype)
        Z[3, 5], Z[7, :] = np.nan, -np.inf
        Z[9, 2] = np.inf
        found, expected = _row_max(Z), Z.max(axis=1, keepdims=True)
        assert found.shape == expected.shape == (33, 1) and found.dtype == dtype
        np.testing.assert_array_equal(found, expected)
        np.testing.assert_array_equal(_row_max(Z[::2]), Z[::2].max(axis=1, keepdims=True))


def test_mse():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((6, 4))
    T = np.eye(4)[rng.integers(0, 4, 6)]
    check_loss(loss_named("mse.v1"), Z, T)
    value, _ = loss_named("mse.v1")(np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert value == pytest.approx((0.5 * (1 + 1) + 0.5 * 1) / 2)


def test_mae_and_huber_values_by_hand_and_gradients():
    Z = np.array([[1.0, -2.0], [0.5, 3.0]])
    T = np.array([[0.0, 0.0], [0.25, -1.0]])
    R = Z - T  # 1, -2, 0.25, 4
    value, dZ = loss_named("mae.v1")(Z, T)
    assert value == pytest.approx((1 + 2 + 0.25 + 4) / 2)
    np.testing.assert_array_equal(dZ, np.sign(R) / 2)
    value, dZ = loss_named("huber.v1", delta=1.5)(Z, T)
    by_hand = [0.5 * 1, 1.5 * (2 - 0.75), 0.5 * 0.0625, 1.5 * (4 - 0.75)]
    assert value == pytest.approx(sum(by_hand) / 2)
    np.testing.assert_array_equal(dZ, np.clip(R, -1.5, 1.5) / 2)
    # Beyond every residual, Huber is mse.v1.
    assert loss_named("huber.v1", delta=10.0)(Z, T)[0] == pytest.approx(loss_named("mse.v1")(Z, T)[0])
    rng = np.random.default_rng(3)
    for delta in (0.3, 2.0):
        check_loss(loss_named("huber.v1", delta=delta), rng.standard_normal((7, 3)) * 2,
                   rng.standard_normal((7, 3)))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("one_hot", [False, True])
def test_weighted_cross_entropy_value_by_hand_and_gradient(label_smoothing, one_hot):
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((6, 3)) * 2
    labels = np.array([0, 1, 2, 2, 1, 2])
    weights = [0.5, 2.0, 1.25]
    loss = loss_named("softmax_cross_entropy.v1", label_smoothing=label_smoothing,
                      class_weights=weights)
    T = np.eye(3)[labels] if one_hot else labels
    P = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    smoothed = (1 - label_smoothing) * np.eye(3)[labels] + label_smoothing / 3
    by_hand = -np.mean(np.array(weights)[labels] * np.sum(smoothed * np.log(P), axis=1))
    assert loss(Z, T)[0] == pytest.approx(by_hand, rel=1e-12)
    check_loss(loss, Z, T)
    # All weights 1: the unweighted loss.
    ones = loss_named("softmax_cross_entropy.v1", label_smoothing=label_smoothing, class_weights=[1.0] * 3)
    plain = loss_named("softmax_cross_entropy.v1", label_smoothing=label_smoothing)
    assert ones(Z, T)[0] == pytest.approx(plain(Z, T)[0], rel=1e-12)


def test_balanced_weights_are_n_over_classes_times_count():
    loss = loss_named("softmax_cross_entropy.v1", balanced=True)
    with pytest.raises(ValueError, match="call balance"):
        loss(np.zeros((2, 3)), np.array([0, 1]))
    loss.balance(np.bincount([0, 0, 0, 1, 2, 2], minlength=3))
    np.testing.assert_allclose(loss.weights, [6 / 9, 6 / 3, 6 / 6])


def test_mse_rejects_labels():
    with pytest.raises(ValueError, match="MeanSquaredError: targets"):
        loss_named("mse.v1")(np.zeros((3, 2)), np.array([0, 1, 1]))


def test_whole_network_and_loss_end_to_end():
    rng = np.random.default_rng(0)
    specs = [
        ("dense.v1", {"units": 5}),
        ("batchnorm.v1", {}),
        ("tanh.v1", {}),
        ("dense.v1", {"units": 4, "init": "glorot_normal"}),
        ("gelu.v1", {}),
        ("dense.v1", {"units": 3}),
    ]
    net = make_network(specs, 3, rng, F64)
    X = rng.standard_normal((7, 3))
    labels = rng.integers(0, 3, 7)
    loss = loss_named("softmax_cross_entropy.v1", label_smoothing=0.05)

    def objective():
        return loss(net.forward(X, training=True)[0], labels)[0]

    Z, backprop = net.forward(X, training=True)
    _, dZ = loss(Z, labels)
    dX, grads = backprop(dZ, need_dX=True)
    dX, grads = dX.copy(), {k: g.copy() for k, g in grads.items()}
    assert relative_error(dX, numeric_gradient(objective, X)) < 1e-6
    assert set(grads) == {name for name, _ in net.parameters()}
    for name, param in net.parameters():
        assert relative_error(grads[name], numeric_gradient(objective, param)) < 1e-6, name
