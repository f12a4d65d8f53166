"""Photos and drawings of any size made to look like the images a model was trained on.

    pixels, inverted = mnist_like(grey, (28, 28), invert="auto", maximum=255)

MNIST's recipe (LeCun, Cortes and Burges): each digit's bounding box was
scaled, keeping its aspect ratio, to fit in a 20x20 box (anti-aliased, hence
grey levels), then placed in a 28x28 field so that its centre of mass lies
at the field's centre (pixel (14, 14), measured on the training set). A
model trained on MNIST has only seen digits that look like that; a 200x200
photo of a digit must be brought to the same form, not merely shrunk.

`mnist_like` applies the recipe to an image of any size, for a model whose
samples are `(height, width)` images: the box is 20/28 of each side (20x20
for 28x28), the centre `(height / 2, width / 2)`. The steps:

1. background: with `invert="auto"` an image whose border is light (median of
   the outer frame above half the grey range) is dark ink on light paper and
   is inverted; `"yes"` and `"no"` force either way;
2. contrast: the background level (the frame's median) becomes 0 and the
   brightest ink the largest value the model was trained on (`maximum`:
   255 for MNIST's pixels, 16 for scikit-learn's 8x8 digits);
3. the bounding box of the ink (pixels above a fifth of the brightest) is cut
   out, resized with Lanczos filtering to fit the box keeping its aspect ratio,
   and pasted so that its centre of mass lands on the centre (whole pixels;
   what would fall outside the field is cut off).

Pillow (the `images` extra) does the resizing.
"""

from __future__ import annotations

import numpy as np

#: MNIST: a 20x20 box in a 28x28 field.
BOX_SHARE = 20 / 28
#: Ink: pixels brighter than this share of the brightest, after background removal.
INK_SHARE = 0.2
INVERT_CHOICES = ("auto", "yes", "no")


def frame(grey: np.ndarray) -> np.ndarray:
    """The outer frame of a `(h, w)` image: max(1, min(h, w) // 20) pixels wide, flattened."""
    h, w = grey.shape
    k = max(1, min(h, w) // 20)
    if h <= 2 * k or w <= 2 * k:
        return grey.ravel()
    return np.concatenate([grey[:k].ravel(), grey[-k:].ravel(), grey[k:-k, :k].ravel(),
                           grey[k:-k, -k:].ravel()])


def light_background(grey: np.ndarray) -> bool:
    """Whether a `(h, w)` uint8 image is dark on light: its frame's median is above 127.5."""
    return float(np.median(frame(grey))) > 127.5


def should_invert(grey: np.ndarray, invert: str) -> bool:
    """Whether to invert the `(h, w)` uint8 image under `invert` ("auto", "yes", "no")."""
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert: expected one of {INVERT_CHOICES}, found {invert!r}")
    return light_background(grey) if invert == "auto" else invert == "yes"


def mnist_like(grey: np.ndarray, shape: tuple[int, int], *, invert: str = "auto",
               maximum: float = 255.0, whole: bool = True) -> tuple[np.ndarray, bool]:
    """`(pixels (height, width) float64, inverted)`: the `(h, w)` uint8 image `grey`
    normalised by MNIST's recipe to `shape`, values in [0, maximum] (rounded when
    `whole`). An image with no ink (blank after background removal) gives zeros."""
    from PIL import Image

    height, width = shape
    inverted = should_invert(grey, invert)
    image = grey.astype(np.float64)
    if inverted:
        image = 255.0 - image
    image = np.clip(image - np.median(frame(image)), 0.0, None)
    out = np.zeros(shape, dtype=np.float64)
    top = image.max()
    if top <= 0.0:
        return out, inverted
    image *= 255.0 / top
    ink = image > 255.0 * INK_SHARE
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box_h, box_w = max(1, round(BOX_SHARE * height)), max(1, round(BOX_SHARE * width))
    scale = min(box_h / crop.shape[0], box_w / crop.shape[1])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    patch = np.asarray(Image.fromarray(crop.astype(np.float32))
                       .resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    patch = np.clip(patch, 0.0, 255.0)
    mass = patch.sum()
    if mass <= 0.0:
        return out, inverted
    cy = (patch.sum(axis=1) * np.arange(patch.shape[0])).sum() / mass
    cx = (patch.sum(axis=0) * np.arange(patch.shape[1])).sum() / mass
    top_row, left = round(height / 2 - cy), round(width / 2 - cx)
    # Paste with clipping: the part of the patch that falls inside the field.
    r0, c0 = max(0, top_row), max(0, left)
    r1, c1 = min(height, top_row + patch.shape[0]), min(width, left + patch.shape[1])
    if r0 < r1 and c0 < c1:
        out[r0:r1, c0:c1] = patch[r0 - top_row:r1 - top_row, c0 - left:c1 - left]
    out *= maximum / 255.0
    return (np.round(out) if whole else out), inverted
