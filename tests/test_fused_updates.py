"""Fused SGD / momentum steps (mlpspec.nn.blas): same maths as the array path, taken by `fit`.

The fused path hands each dense weight gradient to the optimizer as a
`Product` (X, dY) and folds it into the update with one GEMM; these tests pin
that it computes the documented formulas, that `fit` really takes it when it
is available (and not when L2 or clipping need the gradient as an array), and
that it agrees with the unfused path.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpspec import registry
from mlpspec.nn import blas
from mlpspec.nn.layers import Product
from mlpspec.spec import parse_spec
from mlpspec.train import fit
from mlpspec.data.prepare import Prepared, Scaling, one_hot

needs_blas = pytest.mark.skipif(not blas.AVAILABLE, reason="NumPy's own OpenBLAS is not reachable")


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_tn_and_axpy_compute_their_formulas(dtype):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((7, 3)).astype(dtype)
    C = rng.standard_normal((5, 3)).astype(dtype)
    expected = 0.5 * A.T @ B + 0.9 * C
    blas.gemm_tn(A, B, C, alpha=0.5, beta=0.9)
    np.testing.assert_allclose(C, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
    y, x = C.copy(), rng.standard_normal(C.shape).astype(dtype)
    blas.axpy(-0.25, x, C)
    np.testing.assert_allclose(C, y - 0.25 * x, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # a view of a batch is accepted (copied), a wrong shape or dtype is refused
    blas.gemm_tn(A[::2], B[::2], C, alpha=1.0, beta=0.0)
    np.testing.assert_allclose(C, A[::2].T @ B[::2], rtol=1e-5 if dtype == np.float32 else 1e-12)
    with pytest.raises(ValueError, match="do not match"):
        blas.gemm_tn(A, B[:3], C, alpha=1.0, beta=0.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        blas.axpy(1.0, x.astype(np.float16), C)
    # gemm_nn: C <- alpha A B + beta C; a read-only input is read, not refused
    D, E0 = rng.standard_normal((4, 7)).astype(dtype), rng.standard_normal((4, 5)).astype(dtype)
    D.flags.writeable = False
    E = E0.copy()
    blas.gemm_nn(D, A, E, alpha=2.0, beta=-1.0)
    np.testing.assert_allclose(E, 2.0 * D @ A - E0, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        blas.gemm_nn(A, D, E, alpha=1.0, beta=0.0)
    # a bias: the (1, n) output of a^T b may be the 1-D (n,) array
    bias = np.zeros(3, dtype)
    blas.gemm_tn(np.ones((7, 1), dtype), B, bias, alpha=1.0, beta=0.0)
    np.testing.assert_allclose(bias, B.sum(axis=0), rtol=1e-5 if dtype == np.float32 else 1e-12)


@needs_blas
@pytest.mark.parametrize("name, keys", [("sgd.v1", {}), ("momentum.v1", {"momentum": 0.9})])
def test_a_product_gradient_steps_like_the_array_it_stands_for(name, keys):
    """Three steps with Product grads == three steps with the materialised X^T dY (float64)."""
    rng = np.random.default_rng(1)
    fused, plain = (registry.make("optimizer", name, {"learning_rate": 0.1, **keys}) for _ in range(2))
    assert fused.FUSES
    W0 = rng.standard_normal((6, 4))
    p_fused, p_plain = W0.copy(), W0.copy()
    for _ in range(3):
        X, dY = rng.standard_normal((8, 6)), rng.standard_normal((8, 4))
        fused.step([p_fused], [Product(X, dY)], 0.05)
        plain.step([p_plain], [X.T @ dY], 0.05)
    np.testing.assert_allclose(p_fused, p_plain, rtol=1e-12, atol=1e-14)
    assert not np.array_equal(p_fused, W0)


def test_nesterov_and_adam_never_take_products():
    for name in ("nesterov.v1", "adam.v1", "adamw.v1"):
        assert not registry.make("optimizer", name, {}).FUSES, name


SPEC = """
spec_version = 1
name = "fused"
seed = 3
[data]
source = "npz"
train = "unused.npz"
test = "unused.npz"
classes = 3
[network]
inputs = 12
layers = [{{ type = "dense.v1", units = 16 }}, {{ type = "relu.v1" }}, {{ type = "dense.v1", units = 3 }}]
[train]
epochs = 3
batch_size = 16
precision = "float32"
optimizer = {{ type = "{optimizer}", learning_rate = 0.05 }}
regularization = {{ l2 = {l2}, clip_norm = {clip} }}
"""


def _data(n=100, features=12, classes=3) -> Prepared:
    rng = np.random.default_rng(0)
    x = rng.random((n, features), dtype=np.float32)
    y = x[:, :classes].argmax(axis=1).astype(np.int64)
    empty = np.zeros((0, features), np.float32)
    return Prepared(x, y, one_hot(y, classes, np.dtype(np.float32)), empty, y[:0], x, y, classes,
                    ("a", "b", "c"), (features,), Scaling("none", np.array(0.0), np.array(1.0)))


def _fit(monkeypatch, optimizer, l2=0.0, clip=0.0, fuse=True):
    """Weights after `fit`, and how many fused GEMMs it made."""
    spec = parse_spec(SPEC.format(optimizer=optimizer, l2=l2, clip=clip))
    calls = []
    original = blas.gemm_tn

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(blas, "gemm_tn", counting)
    monkeypatch.setattr(type(registry.make("optimizer", optimizer, {})), "FUSES", fuse)
    result = fit(spec, _data())
    return result.network.state_dict(), len(calls)


@needs_blas
@pytest.mark.parametrize("optimizer", ["sgd.v1", "momentum.v1"])
def test_fit_takes_the_fused_path_and_lands_where_the_array_path_does(monkeypatch, optimizer):
    fused, fused_calls = _fit(monkeypatch, optimizer)
    plain, plain_calls = _fit(monkeypatch, optimizer, fuse=False)
    steps = 3 * 7  # 3 epochs of ceil(100 / 16) batches
    assert fused_calls == 2 * 2 * steps  # per dense layer per step, one GEMM for W and one for b
    assert plain_calls == 0
    for name in fused:
        np.testing.assert_allclose(fused[name], plain[name], rtol=2e-4, atol=2e-6, err_msg=name)


@needs_blas
@pytest.mark.parametrize("l2, clip", [(0.5, 0.0), (0.0, 1.0)])
def test_l2_and_clipping_keep_the_array_path(monkeypatch, l2, clip):
    _, calls = _fit(monkeypatch, "momentum.v1", l2=l2, clip=clip)
    assert calls == 0


@needs_blas
def test_fused_runs_are_bit_identical_reruns(monkeypatch):
    first, _ = _fit(monkeypatch, "momentum.v1")
    second, _ = _fit(monkeypatch, "momentum.v1")
    for name in first:
        assert np.array_equal(first[name], second[name]), name


def _textbook_momentum(W0, steps, mu, lr):
    """PyTorch's momentum (`v = mu v + g; p -= lr v`) in float64, and the final velocity."""
    p, v = W0.copy(), np.zeros_like(W0)
    for X, dY in steps:
        v = mu * v + X.T @ dY
        p = p - lr * v
    return p, v


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9, 0.99])
def test_scaled_velocity_follows_the_textbook_momentum_across_renormalisations(fused, mu):
    """300 steps (two renormalisations at mu = 0.9): the stored velocity times its scale is v."""
    if fused and not blas.AVAILABLE:
        pytest.skip("NumPy's own OpenBLAS is not reachable")
    rng = np.random.default_rng(2)
    steps = [(rng.standard_normal((5, 6)), rng.standard_normal((5, 4))) for _ in range(300)]
    W0 = rng.standard_normal((6, 4))
    optimizer = registry.make("optimizer", "momentum.v1", {"momentum": mu})
    p = W0.copy()
    for X, dY in steps:
        optimizer.step([p], [Product(X, dY) if fused else X.T @ dY], 0.01)
    expected_p, expected_v = _textbook_momentum(W0, steps, mu, 0.01)
    np.testing.assert_allclose(p, expected_p, rtol=1e-10, atol=1e-12)
    state = optimizer.state_dict()
    np.testing.assert_allclose(state["velocity.0"] * state["velocity_scale"], expected_v, rtol=1e-10, atol=1e-12)


@needs_blas
def test_the_fused_momentum_gemm_skips_the_beta_pass_between_renormalisations(monkeypatch):
    """beta = 1 (no scaling pass over the velocity) except at the renormalising steps."""
    betas = []
    original = blas.gemm_tn

    def spy(A, B, C, *, alpha, beta):
        betas.append(beta)
        return original(A, B, C, alpha=alpha, beta=beta)

    monkeypatch.setattr(blas, "gemm_tn", spy)
    rng = np.random.default_rng(3)
    optimizer = registry.make("optimizer", "momentum.v1", {"momentum": 0.9})
    p = np.zeros((3, 2), np.float32)
    for _ in range(300):
        optimizer.step([p], [Product(rng.random((4, 3), dtype=np.float32), rng.random((4, 2), dtype=np.float32))],
                       0.01)
    # 0.9^132 < 2^-20 <= 0.9^131: steps 132 and 264 renormalise (beta = mu * c), all others beta = 1
    assert [i + 1 for i, beta in enumerate(betas) if beta != 1.0] == [132, 264]


def test_a_momentum_state_without_a_scale_is_a_plain_velocity():
    optimizer = registry.make("optimizer", "momentum.v1", {"momentum": 0.9})
    optimizer.load_state_dict({"velocity.0": np.array([2.0])})
    p = np.array([1.0])
    optimizer.step([p], [np.array([0.5])], 0.1)
    assert p[0] == pytest.approx(1.0 - 0.1 * (0.9 * 2.0 + 0.5), rel=1e-15)
