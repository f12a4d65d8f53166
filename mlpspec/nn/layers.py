"""Layers and the `Network` that chains them (thinc style).

A layer is a small object with

    params : dict[str, ndarray]   trained arrays ({} for activations)
    state  : dict[str, ndarray]   non-trained buffers (BatchNorm running stats)
    n_in, n_out : int             feature counts
    forward(X, *, training) -> (Y, backprop)
    backprop(dY, need_dX=True) -> (dX or None, grads)   grads has the keys of params
                                  (Dense also takes defer=True: dW as a Product)

`X` is `(n_samples, n_in)`, `Y` and `dY` are `(n_samples, n_out)`. A layer's
constructor takes exactly the keys of its spec class, already checked there
(`mlpspec.spec.model`: the one place for defaults and valid ranges); the
names that choose a layer are declared in `mlpspec.registry`, and
`registry.make_layer("dense.v1", {"units": 256}, n_in, rng, dtype)` builds one
from plain keys. `build(n_in, rng, dtype)` then sizes and initialises it.

Buffer contract (why: allocating ~100 kB arrays every step costs page faults)
-----------------------------------------------------------------------------
With `training=True` a layer writes `Y`, `dX` and the parameter gradients into
arrays it owns and reuses, keyed by batch size. They stay valid only until the
same layer runs forward (for `Y`, `dX`) or backprop (for grads) again with a
batch of the same size: consume or copy them before the next step. Likewise a
`backprop` closure may be called only before the next training forward.
With `training=False` every array returned is freshly allocated, so evaluation
and `Network.predict` outputs can be kept. Inputs are never modified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import attrs
import numpy as np

from mlpspec.errors import MlpspecError, TrainingError
from mlpspec.nn import blas
from mlpspec.nn.init import Initializer

Backprop = Callable[..., tuple[np.ndarray | None, dict[str, np.ndarray]]]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype) -> np.dtype:
    """Normalise `dtype` ("float32", np.float32, ...) to float32 or float64."""
    found = np.dtype(dtype)
    if found not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {found}")
    return found


def _fresh(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype)


class _Workspace:
    """Arrays a layer reuses across training steps, keyed by name and shape."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self._arrays: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype, fill: float | None = None) -> np.ndarray:
        """The kept array; `fill`: a constant array, filled once when made (never write to it)."""
        array = self._arrays.get((name, shape))
        if array is None:
            if len(self._arrays) > 32:  # many batch sizes: don't hoard memory
                self._arrays.clear()
            array = self._arrays[(name, shape)] = np.empty(shape, dtype)
            if fill is not None:
                array.fill(fill)
        return array


class Layer:
    """Shared plumbing: `build` records sizes and dtype; subclasses set params."""

    # Names of params that count as weights for L2, weight decay and max-norm.
    WEIGHTS: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        self.n_in = self.n_out = 0
        self.dtype = DTYPES[0]

    def build(self, n_in: int, rng: np.random.Generator, dtype) -> None:
        self.n_in = self.n_out = int(n_in)
        self.dtype = as_dtype(dtype)
        self._ws = _Workspace(self.dtype)

    def _alloc(self, training: bool) -> Callable[[str, tuple[int, ...], np.dtype], np.ndarray]:
        return self._ws.get if training else _fresh

    def _check_input(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != self.n_in:
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (n_samples, {self.n_in}), got {X.shape}"
            )
        return X if X.dtype == self.dtype else X.astype(self.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_in={self.n_in}, n_out={self.n_out})"


@attrs.frozen
class Product:
    """A gradient not yet computed: `a.T @ b`, a `(batch, m)`, b `(batch, n_out)`.

    Dense's weight gradient is `Product(X, dY)` (m = n_in), its bias gradient
    `Product(ones (batch, 1), dY)` (m = 1, the `(n_out,)` bias taken as a row).

    Dense's backprop returns it with `defer=True`; an optimizer with `FUSES`
    folds it into its update in one BLAS call. It refers to the step's
    buffers, so it is valid only until the next training forward.
    """

    a: np.ndarray
    b: np.ndarray


class Dense(Layer):
    """Affine layer Y = X @ W + b with W `(n_in, units)` and a zero-initialised b `(units,)`.

    `init` is the initializer function (`mlpspec.nn.init`) the spec's `init`
    names; `std` is passed to it.
    """

    WEIGHTS = ("W",)

    def __init__(self, *, units: int, init: Initializer, std: float):
        super().__init__()
        self.units, self.init, self.std = units, init, float(std)

    def build(self, n_in, rng, dtype):
        super().build(n_in, rng, dtype)
        self.n_out = self.units
        W = self.init(rng, self.n_in, self.units, self.dtype, self.std)
        self.params = {"W": W, "b": np.zeros(self.units, self.dtype)}

    def forward(self, X, *, training):
        X = self._check_input(X)
        W, b = self.params["W"], self.params["b"]
        alloc = self._alloc(training)
        n = X.shape[0]
        Y = alloc("Y", (n, self.n_out), self.dtype)
        if training and blas.AVAILABLE:
            # The product accumulates onto the broadcast bias (beta = 1): no pass to add b.
            # Training only: evaluation keeps matmul then + b, whose bits infer.py gives
            # (the two round differently; tests/test_regression.py fails if they mix).
            np.copyto(Y, b)
            blas.gemm_nn(X, W, Y, alpha=1.0, beta=1.0)
        else:
            np.matmul(X, W, out=Y)
            Y += b

        def backprop(dY, need_dX=True, defer=False):
            # defer: hand the optimizer dW = X^T dY and db = 1^T dY as the products they
            # are, so that it can fold each into its update (see mlpspec.nn.blas).
            dX = np.matmul(dY, W.T, out=alloc("dX", X.shape, self.dtype)) if need_dX else None
            if defer:
                ones = self._ws.get("ones", (n, 1), self.dtype, fill=1.0)
                return dX, {"W": Product(X, dY), "b": Product(ones, dY)}
            dW = np.matmul(X.T, dY, out=alloc("dW", W.shape, self.dtype))
            db = np.add.reduce(dY, axis=0, out=alloc("db", b.shape, self.dtype))
            return dX, {"W": dW, "b": db}

        return Y, backprop


class ReLU(Layer):
    """max(X, 0); the gradient at exactly 0 is taken as 0."""

    def build(self, n_in, rng, dtype):
        super().build(n_in, rng, dtype)
        self._zero_row = np.zeros(self.n_in, self.dtype)  # what evaluation compares with

    def forward(self, X, *, training):
        X = self._check_input(X)
        alloc = self._alloc(training)
        # np.maximum against an array of zeros, not the scalar 0: the same values, but
        # NumPy's vectorised two-array loop (8 us for 128 x 512 float32, 25 us with 0).
        zeros = self._ws.get("zeros", X.shape, self.dtype, fill=0.0) if training else self._zero_row
        Y = np.maximum(X, zeros, out=alloc("Y", X.shape, self.dtype))

        def backprop(dY, need_dX=True):
            if not need_dX:
                return None, {}
            active = np.greater(Y, 0, out=alloc("active", Y.shape, np.dtype(bool)))
            return np.multiply(dY, active, out=alloc("dX", Y.shape, self.dtype)), {}

        return Y, backprop


class LeakyReLU(Layer):
    """X where X > 0, alpha * X elsewhere."""

    def __init__(self, *, alpha: float):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, X, *, training):
        X = self._check_input(X)
        alloc = self._alloc(training)
        positive = X > 0
        Y = np.multiply(X, self.alpha, out=alloc("Y", X.shape, self.dtype))
        np.copyto(Y, X, where=positive)

        def backprop(dY, need_dX=True):
            if not need_dX:
                return None, {}
            dX = np.multiply(dY, self.alpha, out=alloc("dX", X.shape, self.dtype))
            np.copyto(dX, dY, where=positive)
            return dX, {}

        return Y, backprop


class Sigmoid(Layer):
    """1 / (1 + exp(-X)), computed as 0.5 * (1 + tanh(X / 2)) so it never overflows."""

    def forward(self, X, *, training):
        X = self._check_input(X)
        alloc = self._alloc(training)
        Y = np.multiply(X, 0.5, out=alloc("Y", X.shape, self.dtype))
        np.tanh(Y, out=Y)
        Y += 1.0
        Y *= 0.5

        def backprop(dY, need_dX=True):
            if not need_dX:
                return None, {}
            dX = np.subtract(1.0, Y, out=alloc("dX", X.shape, self.dtype))
            dX *= Y
            dX *= dY
            return dX, {}

        return Y, backprop


class Tanh(Layer):
    """tanh(X); dX = dY * (1 - Y^2)."""

    def forward(self, X, *, training):
        X = self._check_input(X)
        alloc = self._alloc(training)
        Y = np.tanh(X, out=alloc("Y", X.shape, self.dtype))

        def backprop(dY, need_dX=True):
            if not need_dX:
                return None, {}
            dX = np.multiply(Y, Y, out=alloc("dX", X.shape, self.dtype))
            np.subtract(1.0, dX, out=dX)
            dX *= dY
            return dX, {}

        return Y, backprop


_GELU_C = math.sqrt(2.0 / math.pi)  # a Python float, so float32 stays float32
_GELU_A = 0.044715


class GELU(Layer):
    """GELU, tanh approximation (PyTorch `approximate="tanh"`):

        Y = 0.5 X (1 + tanh(u)),  u = sqrt(2/pi) (X + 0.044715 X^3)

    NumPy has no vectorised erf, so "gelu.v1" is this approximation; an exact
    erf version would be a new name ("gelu.v2"), not a change to this one.
    """

    def forward(self, X, *, training):
        X = self._check_input(X)
        alloc = self._alloc(training)
        X2 = X * X
        t = np.tanh(_GELU_C * X * (1.0 + _GELU_A * X2))
        Y = np.multiply(X, 0.5, out=alloc("Y", X.shape, self.dtype))
        Y *= 1.0 + t

        def backprop(dY, need_dX=True):
            if not need_dX:
                return None, {}
            du = _GELU_C * (1.0 + (3.0 * _GELU_A) * X2)
            dX = np.multiply(0.5 * X * (1.0 - t * t), du, out=alloc("dX", X.shape, self.dtype))
            dX += 0.5 * (1.0 + t)
            dX *= dY
            return dX, {}

        return Y, backprop


class Dropout(Layer):
    """Inverted dropout: in training each unit is kept with probability 1 - rate
    and scaled by 1 / (1 - rate), so the expectation is unchanged and inference
    is the identity. The mask comes from a Generator the layer owns, spawned at
    build from the rng passed in; `forward(..., mask=keep)` injects a fixed
    boolean keep-mask of X's shape instead (used by the gradient checks).
    """

    def __init__(self, *, rate: float):
        super().__init__()
        self.rate = float(rate)

    def build(self, n_in, rng, dtype):
        super().build(n_in, rng, dtype)
        self.rng = rng.spawn(1)[0]

    def forward(self, X, *, training, mask: np.ndarray | None = None):
        X = self._check_input(X)
        if not training or (self.rate == 0.0 and mask is None):
            return X, lambda dY, need_dX=True: (dY if need_dX else None, {})
        alloc = self._ws.get
        M = alloc("mask", X.shape, self.dtype)  # keep-mask already scaled by 1 / (1 - rate)
        if mask is None:
            uniform = self.rng.random(dtype=self.dtype, out=alloc("uniform", X.shape, self.dtype))
            np.greater_equal(uniform, self.rate, out=M)
        else:
            np.copyto(M, np.asarray(mask, dtype=bool))
        M *= 1.0 / (1.0 - self.rate)
        Y = np.multiply(X, M, out=alloc("Y", X.shape, self.dtype))

        def backprop(dY, need_dX=True):
            if not need_dX:
                return None, {}
            return np.multiply(dY, M, out=alloc("dX", X.shape, self.dtype)), {}

        return Y, backprop


class BatchNorm(Layer):
    """Batch normalisation over the sample axis, with learned gamma and beta `(n_in,)`.

    Training uses the batch mean and (biased) variance and updates the running
    statistics as `running = momentum * running + (1 - momentum) * batch`
    (Keras' convention: momentum is the weight of the old value). As in
    PyTorch, the running variance is fed the unbiased batch variance
    (n / (n - 1)). Inference uses only the running statistics.
    """

    def __init__(self, *, momentum: float, epsilon: float):
        super().__init__()
        self.momentum, self.epsilon = float(momentum), float(epsilon)

    def build(self, n_in, rng, dtype):
        super().build(n_in, rng, dtype)
        self.params = {"gamma": np.ones(n_in, self.dtype), "beta": np.zeros(n_in, self.dtype)}
        self.state = {
            "running_mean": np.zeros(n_in, self.dtype),
            "running_var": np.ones(n_in, self.dtype),
        }

    def forward(self, X, *, training):
        X = self._check_input(X)
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            scale = gamma / np.sqrt(self.state["running_var"] + self.epsilon)
            shift = beta - self.state["running_mean"] * scale
            Y = X * scale
            Y += shift
            return Y, self._no_backprop

        n = X.shape[0]
        if n < 2:
            raise TrainingError(
                "batchnorm.v1 needs at least 2 samples per training batch, got 1; "
                "change the batch size so that no batch of 1 is left over"
            )
        alloc = self._ws.get
        mean = X.mean(axis=0)
        Xhat = np.subtract(X, mean, out=alloc("Xhat", X.shape, self.dtype))
        var = np.mean(Xhat * Xhat, axis=0)
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        Xhat *= inv_std
        Y = np.multiply(Xhat, gamma, out=alloc("Y", X.shape, self.dtype))
        Y += beta
        m = self.momentum
        self.state["running_mean"] *= m
        self.state["running_mean"] += (1.0 - m) * mean
        self.state["running_var"] *= m
        self.state["running_var"] += (1.0 - m) * (n / (n - 1)) * var

        def backprop(dY, need_dX=True):
            dbeta = np.sum(dY, axis=0, out=alloc("dbeta", beta.shape, self.dtype))
            dgamma = np.sum(dY * Xhat, axis=0, out=alloc("dgamma", gamma.shape, self.dtype))
            dX = None
            if need_dX:
                # dX = gamma / std * (dY - mean(dY) - Xhat * mean(dY * Xhat))
                dX = np.multiply(Xhat, dgamma / n, out=alloc("dX", X.shape, self.dtype))
                np.subtract(dY, dX, out=dX)
                dX -= dbeta / n
                dX *= gamma * inv_std
            return dX, {"gamma": dgamma, "beta": dbeta}

        return Y, backprop

    def _no_backprop(self, dY, need_dX=True):
        raise RuntimeError("batchnorm.v1: backprop is only defined after a training forward")


class Network:
    """A chain of layers; itself follows the layer protocol (thinc's `chain`).

    Parameter names are dotted, `layers.<index>.<param>` (e.g. `layers.0.W`),
    and so are state names (`layers.3.running_mean`).
    """

    def __init__(self, layers: Sequence[Layer]):
        if not layers:
            raise ValueError("a Network needs at least one layer")
        self.layers = list(layers)
        self.n_in, self.n_out = self.layers[0].n_in, self.layers[-1].n_out
        self.dtype = self.layers[0].dtype
        self._names = [{k: f"layers.{i}.{k}" for k in layer.params} for i, layer in enumerate(self.layers)]
        # Layers before the first one with parameters need no backprop at all.
        self._first_trained = next((i for i, l in enumerate(self.layers) if l.params), len(self.layers))

    @classmethod
    def build(cls, layers: Sequence[Layer], n_in: int, rng: np.random.Generator, dtype=np.float32) -> Network:
        """Build the constructed (not yet built) `layers` in order and chain them.

        Layer i draws from the i-th child of `rng` (`rng.spawn`), so adding or
        changing one layer does not change the initial weights of the others.
        """
        for layer, child in zip(layers, rng.spawn(len(layers))):
            layer.build(n_in, child, dtype)
            n_in = layer.n_out
        return cls(layers)

    def forward(self, X: np.ndarray, *, training: bool) -> tuple[np.ndarray, Backprop]:
        """Run the layers in order: X `(n_samples, n_in)` -> Y `(n_samples, n_out)`.

        The returned `backprop(dY, need_dX=False, defer=False)` returns `(dX or None,
        grads)`, grads keyed like `parameters()`; with `defer` the weight gradients
        of layers that have `WEIGHTS` (dense W) come as `Product`s, not arrays.
        Unlike a single layer it defaults to need_dX=False: the first trained
        layer then skips its dX product.
        """
        backprops = []
        for layer in self.layers:
            X, layer_backprop = layer.forward(X, training=training)
            backprops.append(layer_backprop)

        def backprop(dY, need_dX=False, defer=False):
            grads = {}
            stop = 0 if need_dX else self._first_trained
            for i in range(len(backprops) - 1, stop - 1, -1):
                extra = {"defer": True} if defer and self.layers[i].WEIGHTS else {}
                dY, layer_grads = backprops[i](dY, need_dX=need_dX or i > stop, **extra)
                names = self._names[i]
                for key, grad in layer_grads.items():
                    grads[names[key]] = grad
            return (dY if need_dX else None), grads

        return X, backprop

    def predict(self, X: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Inference outputs `(n_samples, n_out)` (raw scores, before softmax), a fresh array."""
        n = X.shape[0]
        if batch_size is None or batch_size >= n:
            return np.array(self.forward(X, training=False)[0], dtype=self.dtype, copy=True)
        out = np.empty((n, self.n_out), self.dtype)
        for start in range(0, n, batch_size):
            out[start : start + batch_size] = self.forward(X[start : start + batch_size], training=False)[0]
        return out

    def parameters(self) -> list[tuple[str, np.ndarray]]:
        """The live trained arrays as `(dotted name, array)`, in a fixed order."""
        return [(names[k], p) for names, layer in zip(self._names, self.layers) for k, p in layer.params.items()]

    def weights(self) -> list[tuple[str, np.ndarray]]:
        """The subset of `parameters()` that L2, weight decay and max-norm apply to (dense W)."""
        return [
            (self._names[i][k], layer.params[k]) for i, layer in enumerate(self.layers) for k in layer.WEIGHTS
        ]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and state array, keyed by dotted name."""
        out = {}
        for i, layer in enumerate(self.layers):
            for key, array in (*layer.params.items(), *layer.state.items()):
                out[f"layers.{i}.{key}"] = array.copy()
        return out

    def load_state_dict(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Copy `arrays` into the network in place (cast to its dtype).

        The keys must be exactly those of `state_dict()` and every shape must
        match; otherwise MlpspecError names the keys or the layer and shapes.
        """
        expected = {
            f"layers.{i}.{key}": (i, array)
            for i, layer in enumerate(self.layers)
            for key, array in (*layer.params.items(), *layer.state.items())
        }
        missing, unexpected = sorted(expected.keys() - arrays.keys()), sorted(arrays.keys() - expected.keys())
        if missing or unexpected:
            raise MlpspecError(f"state dict does not match the network: missing {missing}, unexpected {unexpected}")
        for name, (i, target) in expected.items():
            source = np.asarray(arrays[name])
            if source.shape != target.shape:
                raise MlpspecError(
                    f"{name} ({type(self.layers[i]).__name__}): expected shape {target.shape}, "
                    f"got {source.shape}"
                )
        for name, (_, target) in expected.items():
            np.copyto(target, arrays[name], casting="unsafe")

    def __repr__(self) -> str:
        return "Network(" + ", ".join(map(repr, self.layers)) + ")"

