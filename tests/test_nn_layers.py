"""Layer and Network behaviour: shapes, dtypes, modes, state, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from mlpspec.errors import MlpspecError, TrainingError
from mlpspec import registry
from mlpspec.nn.losses import probabilities
from mlpspec.registry import make_layer, make_network


def loss_named(name, **keys):
    return registry.make("loss", name, keys)


def optimizer_named(name, **keys):
    return registry.make("optimizer", name, keys)


ALL_LAYERS = [
    ("dense.v1", {"units": 3}),
    ("relu.v1", {}),
    ("leaky_relu.v1", {"alpha": 0.1}),
    ("sigmoid.v1", {}),
    ("tanh.v1", {}),
    ("gelu.v1", {}),
    ("dropout.v1", {"rate": 0.5}),
    ("batchnorm.v1", {"momentum": 0.8}),
]


def mixed_net(rng, dtype=np.float32):
    specs = [
        ("dense.v1", {"units": 16}),
        ("batchnorm.v1", {}),
        ("relu.v1", {}),
        ("dropout.v1", {"rate": 0.2}),
        ("dense.v1", {"units": 8, "init": "glorot_uniform"}),
        ("gelu.v1", {}),
        ("dense.v1", {"units": 3}),
    ]
    return make_network(specs, 5, rng, dtype)


@pytest.mark.parametrize("type_name, params", ALL_LAYERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_shapes_and_dtype_are_preserved(type_name, params, dtype, training):
    rng = np.random.default_rng(0)
    layer = make_layer(type_name, params, 4, rng, dtype)
    X = rng.standard_normal((6, 4)).astype(dtype)
    Y, backprop = layer.forward(X, training=training)
    assert Y.shape == (6, layer.n_out) and Y.dtype == dtype
    for p in (*layer.params.values(), *layer.state.values()):
        assert p.dtype == dtype
    if training or not layer.params:
        dX, grads = backprop(np.ones_like(Y))
        assert dX.shape == X.shape and dX.dtype == dtype
        assert set(grads) == set(layer.params)
        for name, grad in grads.items():
            assert grad.shape == layer.params[name].shape and grad.dtype == dtype


def test_float32_network_step_stays_float32():
    rng = np.random.default_rng(0)
    net = mixed_net(rng)
    X = rng.standard_normal((10, 5)).astype(np.float32)
    Z, backprop = net.forward(X, training=True)
    assert Z.dtype == np.float32
    for loss, T in [
        (loss_named("softmax_cross_entropy.v1", label_smoothing=0.1), rng.integers(0, 3, 10)),
        (loss_named("mse.v1"), np.eye(3)[rng.integers(0, 3, 10)]),  # float64 one-hot
    ]:
        _, dZ = loss(Z, T)
        assert dZ.dtype == np.float32
    dX, grads = backprop(dZ, need_dX=True)
    assert dX.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    optimizer = optimizer_named("adamw.v1")
    params = [p for _, p in net.parameters()]
    optimizer.step(params, [grads[name] for name, _ in net.parameters()], 0.01)
    assert all(p.dtype == np.float32 for p in params)
    assert net.predict(X).dtype == np.float32
    assert probabilities(Z).dtype == np.float32


def test_first_trained_layer_skips_dX():
    rng = np.random.default_rng(0)
    net = make_network([("dense.v1", {"units": 4}), ("relu.v1", {}), ("dense.v1", {"units": 2})], 3, rng)
    Z, backprop = net.forward(rng.standard_normal((5, 3)).astype(np.float32), training=True)
    dX, grads = backprop(np.ones_like(Z))
    assert dX is None and set(grads) == {"layers.0.W", "layers.0.b", "layers.2.W", "layers.2.b"}
    _, first_backprop = net.layers[0].forward(np.ones((5, 3), np.float32), training=True)
    assert first_backprop(np.ones((5, 4), np.float32), need_dX=False)[0] is None


def test_training_buffers_are_reused_but_inference_outputs_are_fresh():
    rng = np.random.default_rng(0)
    layer = make_layer("dense.v1", {"units": 3}, 4, rng, np.float32)
    X = np.ones((5, 4), np.float32)
    assert layer.forward(X, training=True)[0] is layer.forward(X, training=True)[0]
    assert layer.forward(X, training=False)[0] is not layer.forward(X, training=False)[0]
    net = mixed_net(rng)
    kept = net.predict(X[:, :4].repeat(2, axis=1)[:, :5])
    again = net.predict(X[:, :4].repeat(2, axis=1)[:, :5])
    assert kept is not again
    np.testing.assert_array_equal(kept, again)


def test_predict_in_batches_equals_one_batch():
    rng = np.random.default_rng(0)
    net = mixed_net(rng, np.float64)
    X = rng.standard_normal((23, 5))
    np.testing.assert_allclose(net.predict(X, batch_size=4), net.predict(X), rtol=1e-12)


def test_dropout_is_identity_at_inference():
    rng = np.random.default_rng(0)
    layer = make_layer("dropout.v1", {"rate": 0.5}, 4, rng, np.float32)
    X = rng.standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(X, training=False)[0], X)


def test_dropout_scaling_keeps_the_expectation():
    rng = np.random.default_rng(0)
    layer = make_layer("dropout.v1", {"rate": 0.3}, 1000, rng, np.float64)
    X = np.ones((200, 1000))
    Y, _ = layer.forward(X, training=True)
    assert set(np.unique(Y)) == {0.0, 1 / 0.7}
    assert abs(Y.mean() - 1.0) < 0.01  # 200k Bernoulli draws: std of the mean ~0.0015
    assert abs((Y == 0).mean() - 0.3) < 0.01


def test_dropout_masks_differ_between_steps():
    layer = make_layer("dropout.v1", {"rate": 0.5}, 50, np.random.default_rng(0), np.float32)
    X = np.ones((4, 50), np.float32)
    first = layer.forward(X, training=True)[0].copy()
    assert not np.array_equal(first, layer.forward(X, training=True)[0])


def test_batchnorm_updates_running_stats_and_uses_them_at_inference():
    rng = np.random.default_rng(0)
    layer = make_layer("batchnorm.v1", {"momentum": 0.9, "epsilon": 1e-5}, 2, rng, np.float64)
    X = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0]])
    Y, _ = layer.forward(X, training=True)
    np.testing.assert_allclose(Y.mean(axis=0), 0, atol=1e-12)
    # batch mean (3, 20), unbiased variance (4, 100)
    np.testing.assert_allclose(layer.state["running_mean"], [0.3, 2.0])
    np.testing.assert_allclose(layer.state["running_var"], [0.9 + 0.4, 0.9 + 10.0])
    layer.params["gamma"][:] = [2.0, 1.0]
    layer.params["beta"][:] = [0.5, 0.0]
    Y, _ = layer.forward(np.array([[1.3, 2.0]]), training=False)  # one sample works at inference
    expected = 2.0 * (1.3 - 0.3) / np.sqrt(1.3 + 1e-5) + 0.5, (2.0 - 2.0) / np.sqrt(10.9 + 1e-5)
    np.testing.assert_allclose(Y[0], expected, atol=1e-12)


def test_batchnorm_refuses_one_sample_in_training():
    layer = make_layer("batchnorm.v1", {}, 2, np.random.default_rng(0), np.float32)
    with pytest.raises(TrainingError, match="batchnorm.v1"):
        layer.forward(np.ones((1, 2), np.float32), training=True)


def test_parameter_names_and_state_dict_round_trip():
    rng = np.random.default_rng(0)
    net = mixed_net(rng)
    assert [name for name, _ in net.parameters()] == [
        "layers.0.W", "layers.0.b", "layers.1.gamma", "layers.1.beta",
        "layers.4.W", "layers.4.b", "layers.6.W", "layers.6.b",
    ]  # fmt: skip
    assert [name for name, _ in net.weights()] == ["layers.0.W", "layers.4.W", "layers.6.W"]
    X = rng.standard_normal((8, 5)).astype(np.float32)
    net.forward(X, training=True)  # moves the BN running stats
    saved = net.state_dict()
    assert {"layers.1.running_mean", "layers.1.running_var"} <= set(saved)
    expected = net.predict(X)

    other = mixed_net(np.random.default_rng(99))
    assert not np.array_equal(other.predict(X), expected)
    other.load_state_dict(saved)
    np.testing.assert_array_equal(other.predict(X), expected)
    # state_dict returns copies: training on does not change a saved snapshot
    net.parameters()[0][1][:] = 0
    assert saved["layers.0.W"].any()
    again = other.state_dict()
    assert all(np.array_equal(saved[k], again[k]) for k in saved)


def test_load_state_dict_names_the_mismatch():
    net = mixed_net(np.random.default_rng(0))
    saved = net.state_dict()
    with pytest.raises(MlpspecError, match=r"layers\.4\.W.*\(16, 8\).*\(16, 9\)"):
        net.load_state_dict({**saved, "layers.4.W": np.zeros((16, 9))})
    with pytest.raises(MlpspecError, match="missing.*layers.6.b"):
        net.load_state_dict({k: v for k, v in saved.items() if k != "layers.6.b"})


def test_tiny_batch_overfits_with_adam():
    rng = np.random.default_rng(0)
    net = make_network(
        [("dense.v1", {"units": 32}), ("relu.v1", {}), ("dense.v1", {"units": 32}), ("tanh.v1", {}),
         ("dense.v1", {"units": 4})],
        6, rng,
    )  # fmt: skip
    X = rng.standard_normal((8, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 8)
    loss = loss_named("softmax_cross_entropy.v1")
    optimizer = optimizer_named("adam.v1")
    names = [name for name, _ in net.parameters()]
    params = [p for _, p in net.parameters()]
    for _ in range(300):
        Z, backprop = net.forward(X, training=True)
        value, dZ = loss(Z, labels)
        _, grads = backprop(dZ)
        optimizer.step(params, [grads[n] for n in names], 0.01)
    assert value < 1e-3
    assert (net.predict(X).argmax(axis=1) == labels).all()


def train_a_few_steps(seed):
    rng = np.random.default_rng(seed)
    net = mixed_net(rng)
    data = np.random.default_rng(1)
    X = data.standard_normal((16, 5)).astype(np.float32)
    labels = data.integers(0, 3, 16)
    optimizer = optimizer_named("momentum.v1")
    names = [name for name, _ in net.parameters()]
    params = [p for _, p in net.parameters()]
    for _ in range(5):
        Z, backprop = net.forward(X, training=True)
        _, dZ = loss_named("softmax_cross_entropy.v1")(Z, labels)
        _, grads = backprop(dZ)
        optimizer.step(params, [grads[n] for n in names], 0.1)
    return net.state_dict()


def test_identical_seeds_give_bit_identical_results():
    a, b, c = train_a_few_steps(7), train_a_few_steps(7), train_a_few_steps(8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["layers.0.W"], c["layers.0.W"])


@pytest.mark.parametrize("init", list(registry.INITIALIZERS))
def test_initializer_scales(init):
    rng = np.random.default_rng(0)
    W = registry.INITIALIZERS[init].engine(rng, 400, 200, np.float32, 0.01)
    assert W.shape == (400, 200) and W.dtype == np.float32
    expected_std = {
        "normal": 0.01,
        "he_normal": np.sqrt(2 / 400),
        "he_uniform": np.sqrt(6 / 400) / np.sqrt(3),
        "glorot_normal": np.sqrt(2 / 600),
        "glorot_uniform": np.sqrt(6 / 600) / np.sqrt(3),
    }[init]
    assert W.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(W.mean()) < 0.05 * expected_std


def test_bad_layer_specs_name_the_layer():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="conv.v1"):
        make_layer("conv.v1", {}, 3, rng, np.float32)
    with pytest.raises(ValueError, match="dense.v1"):
        make_layer("dense.v1", {"units": 3, "activation": "relu"}, 3, rng, np.float32)
    with pytest.raises(ValueError, match="dropout.v1.*rate"):
        make_layer("dropout.v1", {"rate": 1.0}, 3, rng, np.float32)
    with pytest.raises(ValueError, match="Dense: expected input"):
        make_layer("dense.v1", {"units": 3}, 3, rng, np.float32).forward(np.ones((2, 4)), training=False)
    assert set(registry.LAYERS) == {name for name, _ in ALL_LAYERS}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_relu_and_dense_forward_give_the_textbook_values(dtype, training):
    """ReLU (compared against an array of zeros, for speed) is np.maximum(X, 0) bit for bit,
    NaN propagated; Dense (the product accumulated onto the bias in training) is X W + b."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((7, 5)).astype(dtype)
    X[0, 0], X[1, 1], X[2, 2] = np.nan, -0.0, 0.0
    relu = make_layer("relu.v1", {}, 5, rng, dtype)
    for _ in range(2):  # the second call reuses the kept zeros
        Y, _ = relu.forward(X, training=training)
        np.testing.assert_array_equal(Y, np.maximum(X, 0))
        assert np.isnan(Y[0, 0])
    dense = make_layer("dense.v1", {"units": 3}, 5, rng, dtype)
    dense.params["b"][:] = rng.standard_normal(3)
    X = rng.standard_normal((7, 5)).astype(dtype)
    Y, _ = dense.forward(X, training=training)
    expected = X.astype(np.float64) @ dense.params["W"].astype(np.float64) + dense.params["b"]
    np.testing.assert_allclose(Y, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
