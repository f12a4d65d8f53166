"""Data augmentation: fresh random distortions of the training images every epoch.

    augmenter = Augmenter(spec.data.augment, data.sample_shape, data.scaling)
    X = augmenter(data.x_train, rng.generator(seed, f"augment/epoch-{epoch}"))  # (n, 784) -> (n, 784)

Each sample gets its own random affine map (rotation, scaling, translation)
and, optionally, an elastic distortion (Simard et al. 2003: a random
displacement field smoothed by a Gaussian). Output pixel `p` takes the input
at `A (p - centre) + centre - t + d(p)`, read by bilinear interpolation;
pixels that come from outside the image take the value of a blank (raw 0)
pixel. Whole-pixel shifts alone take a fast path of plain array slicing.

Everything is vectorised over samples: coordinates, integer indices and
interpolation weights are arrays `(chunk, height, width)`, and one gather per
corner reads the pixels. Work goes in chunks of `CHUNK` samples so the
temporaries stay in cache-sized pieces. The random draws happen per chunk in
a fixed order, so the same generator state gives the same images.

The images arrive flattened and scaled (`x_scaled = (x - offset) / scale`).
With scalar scaling (`unit`, `none`) the warp is applied to scaled values
directly, since interpolation commutes with an affine map of the values; with
per-feature scaling (`standardize`) pixels are unscaled first and rescaled
after, because neighbouring features have different scales.
"""

from __future__ import annotations

import math

import numpy as np

from mlpspec.data.prepare import Scaling
from mlpspec.spec.model import AugmentSpec

CHUNK = 2048


def is_active(spec: AugmentSpec) -> bool:
    """Whether the spec asks for any distortion at all."""
    return bool(spec.translate or spec.rotate or spec.scale or spec.elastic_alpha)


class Augmenter:
    """Distorts batches of flattened images `(n, height * width)`; see the module doc."""

    def __init__(self, spec: AugmentSpec, sample_shape: tuple[int, ...], scaling: Scaling):
        if len(sample_shape) != 2:
            raise ValueError(f"augmentation needs 2-D image samples, found shape {sample_shape}")
        self.spec = spec
        self.height, self.width = sample_shape
        offset, scale = np.asarray(scaling.offset), np.asarray(scaling.scale)
        self.per_feature = offset.ndim > 0 or scale.ndim > 0
        self.offset, self.scale = offset, scale
        # The scaled value of a raw 0 pixel (only used with scalar scaling).
        self.fill = 0.0 if self.per_feature else float(-offset / scale) + 0.0  # never -0.0
        self.shift_only = spec.whole_pixels and not (spec.rotate or spec.scale or spec.elastic_alpha)
        if spec.elastic_alpha:
            self.smooth_rows = _gaussian_matrix(self.height, spec.elastic_sigma)
            self.smooth_cols = _gaussian_matrix(self.width, spec.elastic_sigma)

    def __call__(self, X: np.ndarray, generator: np.random.Generator,
                 out: np.ndarray | None = None) -> np.ndarray:
        """Distorted copies of the images `X (n, height * width)`, same dtype: written
        into `out` (same shape, not overlapping X) if given, else into a new array."""
        out = np.empty_like(X) if out is None else out
        for start in range(0, len(X), CHUNK):
            images = X[start:start + CHUNK].reshape(-1, self.height, self.width)
            if self.per_feature:
                images = self._unscale(images)
            warped = self._shift(images, generator) if self.shift_only else self._warp(images, generator)
            if self.per_feature:
                warped = self._rescale(warped)
            out[start:start + CHUNK] = warped.reshape(len(warped), -1)
        return out

    # ------------------------------------------------------------ the two paths

    def _shift(self, images: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """Whole-pixel translations: one slice of a padded copy per distinct shift."""
        k = int(self.spec.translate)
        n, h, w = images.shape
        shifts = generator.integers(-k, k + 1, size=(n, 2))
        padded = np.full((n, h + 2 * k, w + 2 * k), self.fill, dtype=images.dtype)
        padded[:, k:k + h, k:k + w] = images
        out = np.empty_like(images)
        # Loop over the (2k+1)^2 possible shifts, never over samples.
        code = (shifts[:, 0] + k) * (2 * k + 1) + (shifts[:, 1] + k)
        for value in np.unique(code):
            members = np.flatnonzero(code == value)
            dy, dx = divmod(int(value), 2 * k + 1)
            dy, dx = dy - k, dx - k
            out[members] = padded[members, k - dy:k - dy + h, k - dx:k - dx + w]
        return out

    def _warp(self, images: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """Affine (and elastic) warps with bilinear interpolation."""
        spec = self.spec
        n, h, w = images.shape
        dtype = images.dtype
        angle = np.deg2rad(generator.uniform(-spec.rotate, spec.rotate, n)) if spec.rotate else np.zeros(n)
        zoom = generator.uniform(1.0 - spec.scale, 1.0 + spec.scale, n) if spec.scale else np.ones(n)
        if spec.whole_pixels:
            k = int(spec.translate)
            shift = generator.integers(-k, k + 1, size=(n, 2)).astype(np.float64)
        else:
            shift = generator.uniform(-spec.translate, spec.translate, (n, 2))
        # Output pixel p reads the input at A (p - c) + c - t, with A = R(angle) / zoom.
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        rows = (np.arange(h, dtype=dtype) - cy)[None, :, None]
        cols = (np.arange(w, dtype=dtype) - cx)[None, None, :]

        def per_sample(values: np.ndarray) -> np.ndarray:
            return values.astype(dtype)[:, None, None]

        src_y = per_sample(cos) * rows - per_sample(sin) * cols + per_sample(cy - shift[:, 0])
        src_x = per_sample(sin) * rows + per_sample(cos) * cols + per_sample(cx - shift[:, 1])
        if spec.elastic_alpha:
            src_y += self._displacement(n, generator, dtype)
            src_x += self._displacement(n, generator, dtype)
        return _bilinear(images, src_y, src_x, self.fill)

    def _displacement(self, n: int, generator: np.random.Generator, dtype) -> np.ndarray:
        """Elastic displacement `(n, h, w)`: uniform noise in [-1, 1], Gaussian-smoothed, times alpha."""
        noise = generator.random((n, self.height, self.width), dtype=np.float32).astype(dtype)
        noise *= 2
        noise -= 1
        # A separable Gaussian blur is two matrix products: G_rows @ noise @ G_cols^T.
        # The column pass is one (n h, w) @ (w, w) GEMM (a third faster than n
        # small batched products); the row pass stays batched.
        smoothed = noise.reshape(-1, self.width) @ self.smooth_cols.T.astype(dtype)
        smoothed = np.matmul(self.smooth_rows.astype(dtype), smoothed.reshape(n, self.height, self.width))
        smoothed *= dtype.type(self.spec.elastic_alpha)
        return smoothed

    # ------------------------------------------------------------ scaling

    def _as_image(self, values: np.ndarray, dtype) -> np.ndarray:
        """A scalar or per-feature `(h * w,)` scaling array as `(1, h, w)`."""
        flat = np.broadcast_to(values, (self.height * self.width,))
        return flat.astype(dtype).reshape(1, self.height, self.width)

    def _unscale(self, images: np.ndarray) -> np.ndarray:
        return images * self._as_image(self.scale, images.dtype) + self._as_image(self.offset, images.dtype)

    def _rescale(self, images: np.ndarray) -> np.ndarray:
        images -= self._as_image(self.offset, images.dtype)
        images /= self._as_image(self.scale, images.dtype)
        return images


def _bilinear(images: np.ndarray, src_y: np.ndarray, src_x: np.ndarray, fill: float) -> np.ndarray:
    """Sample `images (n, h, w)` at real coordinates `src_y, src_x (n, h, w)`; outside is `fill`.

    The images are padded with one row and column of `fill` before and two
    after, and coordinates clipped to [-1, size]: a point beyond the border
    then reads only padding (or a border pixel with weight 0). `src_y` and
    `src_x` are overwritten.
    """
    n, h, w = images.shape
    ph, pw = h + 3, w + 3
    padded = np.full((n, ph, pw), fill, dtype=images.dtype)
    padded[:, 1:h + 1, 1:w + 1] = images
    # In padded coordinates (+1) every point is >= 0, so modf splits it into
    # the cell's top-left corner and the weights.
    src_y += 1
    src_x += 1
    np.clip(src_y, 0.0, float(h + 1), out=src_y)
    np.clip(src_x, 0.0, float(w + 1), out=src_x)
    fy, y0 = np.modf(src_y)
    fx, x0 = np.modf(src_x)
    index = y0.astype(np.int32)
    index *= pw
    index += x0.astype(np.int32)
    index += (np.arange(n, dtype=np.int32) * (ph * pw))[:, None, None]
    flat = padded.reshape(-1)
    top = flat.take(index)
    index += 1
    top_right = flat.take(index)
    index += pw
    bottom_right = flat.take(index)
    index -= 1
    bottom = flat.take(index)
    # In place: top += fx (top_right - top), the same below, then blend the rows by fy.
    top_right -= top
    top_right *= fx
    top += top_right
    bottom_right -= bottom
    bottom_right *= fx
    bottom += bottom_right
    bottom -= top
    bottom *= fy
    top += bottom
    return top


def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """`G (size, size)` with `G @ v` a Gaussian blur of `v`, as if `v` were zero beyond its ends."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    radius = math.ceil(4 * sigma)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2) * (np.abs(offsets) <= radius)
    full = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).sum()
    return kernel / full
