"""Optimizers, regularisers and schedules against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpspec import registry
from mlpspec.nn.regularize import add_l2_gradient, apply_max_norm, clip_grad_norm, decay_weights, l2_penalty

OPTIMIZERS = registry.OPTIMIZERS


def make_optimizer(name, keys=None):
    return registry.make("optimizer", name, keys)


def run(name, kwargs, grads_per_step, lr, p0=1.0):
    """Apply the optimizer to a one-element parameter; return p after each step."""
    optimizer = make_optimizer(name, kwargs)
    p = np.array([p0])
    history = []
    for g in grads_per_step:
        grad = np.array([g])
        optimizer.step([p], [grad], lr)
        assert grad[0] == g  # gradients are never modified
        history.append(float(p[0]))
    return history


def test_sgd():
    # p = 1 - 0.1*0.5 = 0.95; then 0.95 - 0.1*(-1) = 1.05
    assert run("sgd.v1", {}, [0.5, -1.0], 0.1) == pytest.approx([0.95, 1.05])


def test_momentum():
    # v1 = 0.5 -> p = 1 - 0.1*0.5 = 0.95
    # v2 = 0.9*0.5 + 1 = 1.45 -> p = 0.95 - 0.145 = 0.805
    # v3 = 0.9*1.45 + 0 = 1.305 -> p = 0.805 - 0.1305 = 0.6745
    assert run("momentum.v1", {"momentum": 0.9}, [0.5, 1.0, 0.0], 0.1) == pytest.approx([0.95, 0.805, 0.6745])


def test_nesterov():
    # v1 = 0.5; p = 1 - 0.1*(0.5 + 0.9*0.5) = 1 - 0.095 = 0.905
    # v2 = 0.45 + 1 = 1.45; p = 0.905 - 0.1*(1 + 1.305) = 0.905 - 0.2305 = 0.6745
    assert run("nesterov.v1", {"momentum": 0.9}, [0.5, 1.0], 0.1) == pytest.approx([0.905, 0.6745])


def test_adam():
    # step 1: m = 0.1*2 = 0.2, s = 0.001*4 = 0.004; m^ = 0.2/0.1 = 2, s^ = 0.004/0.001 = 4
    #         p = 1 - 0.01 * 2 / (2 + 1e-8)
    p1 = 1 - 0.01 * 2 / (2 + 1e-8)
    # step 2 (g = 1): m = 0.9*0.2 + 0.1 = 0.28, s = 0.999*0.004 + 0.001 = 0.004996
    #         m^ = 0.28/0.19, s^ = 0.004996/0.001999
    p2 = p1 - 0.01 * (0.28 / 0.19) / (math.sqrt(0.004996 / 0.001999) + 1e-8)
    assert run("adam.v1", {}, [2.0, 1.0], 0.01) == pytest.approx([p1, p2], rel=1e-12)


def test_adamw_decays_before_the_adam_step():
    # p = 1*(1 - 0.01*0.5) = 0.995, then the adam step of test_adam (independent of p)
    p1 = 0.995 - 0.01 * 2 / (2 + 1e-8)
    p2 = p1 * 0.995 - 0.01 * (0.28 / 0.19) / (math.sqrt(0.004996 / 0.001999) + 1e-8)
    assert run("adamw.v1", {"weight_decay": 0.5}, [2.0, 1.0], 0.01) == pytest.approx([p1, p2], rel=1e-12)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip_resumes_identically(name):
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal((3, 2)), rng.standard_normal(2)] for _ in range(4)]
    params_a = [np.ones((3, 2)), np.zeros(2)]
    a = make_optimizer(name)
    for g in grads[:2]:
        a.step(params_a, g, 0.1)
    saved = a.state_dict()
    params_b = [p.copy() for p in params_a]
    b = make_optimizer(name, {})
    b.load_state_dict(saved)
    for g in grads[2:]:
        a.step(params_a, g, 0.1)
        b.step(params_b, g, 0.1)
    for pa, pb in zip(params_a, params_b):
        np.testing.assert_array_equal(pa, pb)
    assert all(isinstance(v, np.ndarray) for v in saved.values())


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_large_params_updated_in_blocks_match_scalar_updates(name):
    # 400 x 350 = 140000 elements spans three blocks (BLOCK = 65536), the last one partial;
    # every element must follow the same one-element trajectory as run() computes.
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((2, 400, 350))
    p = np.full((400, 350), 1.0)
    optimizer = make_optimizer(name)
    for g in grads:
        optimizer.step([p], [g], 0.1)
    for index in [(0, 0), (187, 87), (374, 174), (399, 349)]:  # in blocks 0, 1, 2, 2
        expected = run(name, {}, [grads[0][index], grads[1][index]], 0.1)[-1]
        assert p[index] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["sgd.v1", "momentum.v1"])
def test_a_fused_step_handed_other_arrays_updates_those(name):
    """The fused steps keep their operands' addresses between steps; handed other arrays
    of the same shapes, they update the arrays given, never the ones seen before."""
    from mlpspec.nn.layers import Product

    optimizer = registry.make("optimizer", name, {"learning_rate": 0.1} if name == "sgd.v1" else {})
    if not optimizer.FUSES:
        pytest.skip("NumPy's own OpenBLAS is not reachable")
    rng = np.random.default_rng(5)
    X, dY = rng.random((4, 3), dtype=np.float32), rng.random((4, 2), dtype=np.float32)
    first, second = np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)
    optimizer.step([first], [Product(X, dY)], 0.1)
    seen = first.copy()
    optimizer.step([second], [Product(X, dY)], 0.1)
    np.testing.assert_array_equal(first, seen)
    assert np.all(second < 0)


def test_state_is_allocated_in_the_params_dtype():
    optimizer = make_optimizer("adam.v1")
    p = np.ones(3, np.float32)
    optimizer.step([p], [np.ones(3, np.float32)], 0.1)
    assert p.dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in optimizer.state_dict().items() if k != "t")


def test_loaded_state_with_wrong_shapes_is_rejected():
    from mlpspec.errors import MlpspecError

    optimizer = make_optimizer("momentum.v1")
    optimizer.load_state_dict({"velocity.0": np.zeros(4)})
    with pytest.raises(MlpspecError, match="velocity"):
        optimizer.step([np.zeros(3)], [np.zeros(3)], 0.1)


def test_l2_gradient_and_penalty():
    W = np.array([[1.0, -2.0]])
    dW = np.array([[0.5, 0.5]])
    add_l2_gradient([W], [dW], l2=5.0, batch_size=10)  # dW += 0.5 * W
    np.testing.assert_allclose(dW, [[1.0, -0.5]])
    assert l2_penalty([W], l2=5.0, batch_size=10) == pytest.approx(5.0 / 20 * 5.0)


def test_decoupled_weight_decay():
    W = np.array([2.0, -4.0])
    decay_weights([W], lr=0.1, weight_decay=0.5)  # W *= 1 - 0.05
    np.testing.assert_allclose(W, [1.9, -3.8])


def test_max_norm_clips_each_unit_column():
    # columns: (3, 4) has norm 5 -> scaled to norm 2: (1.2, 1.6); (0.6, 0.8) has norm 1: kept
    W = np.array([[3.0, 0.6], [4.0, 0.8]])
    apply_max_norm([W], 2.0)
    np.testing.assert_allclose(W, [[1.2, 0.6], [1.6, 0.8]])


def test_clip_grad_norm_by_global_norm():
    # global norm sqrt(9 + 16 + 0) = 5 -> scale by 1/5 for max_norm 1
    grads = [np.array([3.0]), np.array([[4.0, 0.0]])]
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(grads[0], [0.6])
    np.testing.assert_allclose(grads[1], [[0.8, 0.0]])
    assert clip_grad_norm(grads, 10.0) == pytest.approx(1.0)  # below the limit: untouched
    np.testing.assert_allclose(grads[0], [0.6])


def lr(name, kwargs, step, total=100, per_epoch=10, base=0.1, warmup=0.0):
    """The rate of `step` under schedule `name` for an optimizer learning rate `base`."""
    keys = {**kwargs, "warmup_epochs": warmup} if warmup else kwargs
    return registry.make("schedule", name, keys, base).lr_at(step, total, per_epoch)


def test_constant():
    assert lr("constant.v1", {}, 0) == lr("constant.v1", {}, 99) == 0.1


def test_step():
    kwargs = {"step_epochs": 3, "gamma": 0.5}
    assert lr("step.v1", kwargs, 0) == 0.1
    assert lr("step.v1", kwargs, 29) == 0.1  # last step of epoch 2
    assert lr("step.v1", kwargs, 30) == pytest.approx(0.05)  # epoch 3
    assert lr("step.v1", kwargs, 60) == pytest.approx(0.025)


def test_exponential_is_per_epoch_applied_each_step():
    assert lr("exponential.v1", {"gamma": 0.5}, 0) == 0.1
    assert lr("exponential.v1", {"gamma": 0.5}, 5) == pytest.approx(0.1 * 0.5**0.5)
    assert lr("exponential.v1", {"gamma": 0.5}, 20) == pytest.approx(0.025)


def test_cosine():
    assert lr("cosine.v1", {"min_lr": 0.01}, 0) == pytest.approx(0.1)
    assert lr("cosine.v1", {"min_lr": 0.01}, 50) == pytest.approx(0.055)
    assert lr("cosine.v1", {"min_lr": 0.01}, 100) == pytest.approx(0.01)


def test_onecycle_matches_pytorch_points():
    # max 1.0, initial 1/25 = 0.04, final 0.04/1e4 = 4e-6; peak at step 0.3*100 - 1 = 29, last step 99
    kwargs = {}  # the optimizer's learning rate (base) is the peak
    assert lr("onecycle.v1", kwargs, 0, base=1.0) == pytest.approx(0.04)
    assert lr("onecycle.v1", kwargs, 29, base=1.0) == pytest.approx(1.0)
    # halfway up (step 14.5 is not a step; use the cosine formula at step 10)
    assert lr("onecycle.v1", kwargs, 10, base=1.0) == pytest.approx(
        1.0 + (0.04 - 1.0) * (1 + math.cos(math.pi * 10 / 29)) / 2)
    assert lr("onecycle.v1", kwargs, 64, base=1.0) == pytest.approx(4e-6 + (1.0 - 4e-6) * 0.5)  # (64-29)/(99-29)
    assert lr("onecycle.v1", kwargs, 99, base=1.0) == pytest.approx(4e-6)
    assert lr("onecycle.v1", kwargs, 29, base=0.3) == pytest.approx(0.3)


def test_warmup_ramps_linearly_then_hands_over():
    # 2 warm-up epochs of 10 steps: step k uses (k + 1) / 20 of the scheduled rate
    assert lr("constant.v1", {}, 0, warmup=2) == pytest.approx(0.1 / 20)
    assert lr("constant.v1", {}, 9, warmup=2) == pytest.approx(0.1 * 10 / 20)
    assert lr("constant.v1", {}, 19, warmup=2) == pytest.approx(0.1)
    assert lr("constant.v1", {}, 20, warmup=2) == pytest.approx(0.1)
    assert lr("cosine.v1", {}, 4, warmup=1) == pytest.approx(0.5 * 0.1 * (1 + math.cos(math.pi * 0.04)) / 2)


def test_registries_hold_exactly_the_versioned_names():
    assert set(OPTIMIZERS) == {"sgd.v1", "momentum.v1", "nesterov.v1", "adam.v1", "adamw.v1"}
    assert set(registry.SCHEDULES) == {"constant.v1", "step.v1", "exponential.v1", "cosine.v1", "onecycle.v1"}


def test_unknown_names_and_keys_are_named_in_errors():
    with pytest.raises(ValueError, match="rmsprop"):
        make_optimizer("rmsprop.v1", {})
    with pytest.raises(ValueError, match="momentum.v1"):
        make_optimizer("momentum.v1", {"beta": 0.9})
    with pytest.raises(ValueError, match="step.v1"):
        registry.make("schedule", "step.v1", {}, 0.1)
