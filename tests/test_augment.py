"""Augmentation (`[data.augment]`) and weight averaging (`[train.averaging]`).

The distortions are checked against exact cases (whole-pixel shifts, bilinear
reads at integer and half-pixel points, blank images stay blank under every
scaling), then for determinism; the training loop for reproducibility,
resumability through the pipeline's checkpoint files, and the averaging's
arithmetic; the spec for defaults, cross-checks and cache keys.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpspec.checkpoint import Checkpoint
from mlpspec.data.augment import Augmenter, _bilinear, _gaussian_matrix, is_active
from mlpspec.data.prepare import Prepared, Scaling, fit_scaling, one_hot
from mlpspec.errors import SpecError, TrainingError
from mlpspec.pipeline import stage_keys
from mlpspec.spec import parse_spec
from mlpspec.spec.model import AugmentSpec
from mlpspec.train import Interrupted, fit

from conftest import npz_spec

UNIT = Scaling("unit", np.array(0.0), np.array(255.0))


def images(n: int = 64, h: int = 12, w: int = 10, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Random flattened images `(n, h * w)` in [0, 1]."""
    return np.random.default_rng(seed).random((n, h * w)).astype(dtype)


# ------------------------------------------------------------ the distortions


def test_whole_pixel_shifts_are_exact_shifts_with_blank_fill():
    X = images()
    scaling = Scaling("unit", np.array(10.0), np.array(2.0))  # a raw 0 scales to -5
    out = Augmenter(AugmentSpec(translate=2, whole_pixels=True), (12, 10), scaling)(
        X, np.random.default_rng(1))
    seen = set()
    for source, result in zip(X.reshape(-1, 12, 10), out.reshape(-1, 12, 10)):
        padded = np.pad(source, 2, constant_values=-5.0)
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(result, padded[2 - dy:14 - dy, 2 - dx:12 - dx])]
        assert matches, "every output is its input shifted by whole pixels"
        seen.update(matches)
    assert len(seen) > 15  # the shifts vary from sample to sample


def test_bilinear_reads_pixels_at_integer_points_and_averages_between():
    stack = np.random.default_rng(0).random((3, 5, 6)).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(5, dtype=np.float32), np.arange(6, dtype=np.float32),
                             indexing="ij")
    src_y, src_x = np.broadcast_to(rows, stack.shape).copy(), np.broadcast_to(cols, stack.shape).copy()
    assert np.array_equal(_bilinear(stack, src_y.copy(), src_x.copy(), fill=7.0), stack)
    # One pixel down and right: the last row and column come from outside.
    shifted = _bilinear(stack, src_y + 1, src_x + 1, fill=7.0)
    assert np.array_equal(shifted[:, :-1, :-1], stack[:, 1:, 1:])
    assert (shifted[:, -1, :] == 7.0).all() and (shifted[:, :, -1] == 7.0).all()
    half = _bilinear(stack, src_y.copy(), src_x + 0.5, fill=7.0)
    np.testing.assert_allclose(half[:, :, :-1], (stack[:, :, :-1] + stack[:, :, 1:]) / 2, rtol=1e-6)
    far = _bilinear(stack, src_y - 100, src_x + 100, fill=7.0)
    assert (far == 7.0).all()


@pytest.mark.parametrize("kind", ["unit", "standardize", "none"])
def test_blank_pixels_stay_blank_under_every_scaling(kind):
    raw = np.zeros((40, 8 * 8))
    raw[:, 27] = 200.0  # one bright pixel near the centre, the rest blank
    raw[::2, 28] = 100.0  # and a second one in half the samples (so standardize varies)
    scaling = fit_scaling(kind, raw)
    X = scaling.apply(raw, np.float32)
    spec = AugmentSpec(translate=1.5, rotate=20, scale=0.2, elastic_alpha=8, elastic_sigma=2)
    out = Augmenter(spec, (8, 8), scaling)(X, np.random.default_rng(0))
    back = out * scaling.scale.astype(np.float32) + scaling.offset.astype(np.float32)
    corners = back.reshape(-1, 8, 8)[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_allclose(corners, 0.0, atol=1e-3)
    assert back.min() > -1e-3 and back.max() < 200.0 + 1e-3
    assert not np.allclose(out, X)


@pytest.mark.parametrize("spec", [AugmentSpec(translate=2, whole_pixels=True),
                                  AugmentSpec(translate=1.5, rotate=15, scale=0.1),
                                  AugmentSpec(rotate=5, elastic_alpha=10, elastic_sigma=3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_generator_same_images_and_dtype_kept(spec, dtype):
    X = images(n=3000, dtype=dtype)  # more than one chunk
    augmenter = Augmenter(spec, (12, 10), UNIT)
    first = augmenter(X, np.random.default_rng(5))
    assert first.dtype == dtype and first.shape == X.shape
    assert np.array_equal(first, augmenter(X, np.random.default_rng(5)))
    assert not np.array_equal(first, augmenter(X, np.random.default_rng(6)))
    assert np.array_equal(X, images(n=3000, dtype=dtype))  # the input is left alone


def test_rotation_keeps_the_centre_and_moves_the_rest():
    X = np.zeros((200, 9 * 9), dtype=np.float32)
    X[:, 4 * 9 + 4] = 1.0  # the centre pixel
    X[:, 4 * 9 + 8] = 1.0  # a pixel at the right edge, 4 from the centre
    out = Augmenter(AugmentSpec(rotate=30), (9, 9), UNIT)(X, np.random.default_rng(0)).reshape(-1, 9, 9)
    np.testing.assert_allclose(out[:, 4, 4], 1.0, atol=1e-5)
    assert np.mean(out[:, 4, 8] < 0.9) > 0.9  # the edge pixel moved in almost every sample


def test_gaussian_matrix_blurs_like_a_kernel():
    G = _gaussian_matrix(28, 4.0)
    assert G[14].sum() == pytest.approx(1.0, abs=1e-3)  # away from the ends the kernel is whole
    assert G[0].sum() < 0.6  # near an end, half of it falls outside
    np.testing.assert_allclose(G, G.T)


def test_elastic_displacement_is_the_blurred_noise_times_alpha():
    # Non-square images so that a swap of the row and column passes shows.
    augmenter = Augmenter(AugmentSpec(elastic_alpha=30, elastic_sigma=3), (12, 20), UNIT)
    field = augmenter._displacement(5, np.random.default_rng(7), np.dtype(np.float64))
    noise = np.random.default_rng(7).random((5, 12, 20), dtype=np.float32).astype(np.float64) * 2 - 1
    expected = 30 * np.einsum("ij,njk,lk->nil", _gaussian_matrix(12, 3.0), noise, _gaussian_matrix(20, 3.0))
    np.testing.assert_allclose(field, expected, rtol=1e-10, atol=1e-12)
    assert field.shape == (5, 12, 20) and 0.3 < field.std() < 3  # about a pixel, as Simard's fields


def test_default_is_off():
    assert not is_active(AugmentSpec())
    assert is_active(AugmentSpec(scale=0.1))


# ------------------------------------------------------------ training

SPEC = npz_spec("pictures", inputs=64, seed=2) + """
[[network.layers]]
type = "dense.v1"
units = 24
[[network.layers]]
type = "relu.v1"
[[network.layers]]
type = "dropout.v1"
rate = 0.2
[[network.layers]]
type = "dense.v1"
units = 3
[train]
epochs = 5
batch_size = 32
[train.optimizer]
type = "momentum.v1"
learning_rate = 0.05
"""

AUGMENT = ("data.augment.translate=1", "data.augment.rotate=10")


def pictures(seed: int = 0, n: int = 240) -> Prepared:
    """8x8 images, three classes: a bright 4x4 square in one of three places."""
    rng = np.random.default_rng(seed)

    def split(count):
        y = rng.integers(0, 3, count)
        x = rng.random((count, 8, 8)) * 0.2
        for cls, (r, c) in enumerate([(1, 1), (3, 3), (1, 3)]):
            x[y == cls, r:r + 4, c:c + 4] += 0.8
        return x.reshape(count, 64).astype(np.float32), y

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(n), split(n // 4), split(n // 4)
    return Prepared(x_train, y_train, one_hot(y_train, 3, np.dtype(np.float32)), x_val, y_val,
                    x_test, y_test, 3, ("a", "b", "c"), (8, 8), UNIT)


def spec(*overrides: str):
    return parse_spec(SPEC, "pictures.toml", overrides)


def weights(result) -> dict[str, bytes]:
    return {name: array.tobytes() for name, array in result.network.state_dict().items()}


def test_augmented_training_is_reproducible_and_differs_from_plain():
    data = pictures()
    first, second = fit(spec(*AUGMENT), data), fit(spec(*AUGMENT), data)
    assert weights(first) == weights(second)
    assert weights(first) != weights(fit(spec(), data))
    assert first.history[-1].val_accuracy > 0.9


def test_augmentation_needs_image_samples():
    data = pictures()
    flat = Prepared(data.x_train, data.y_train, data.t_train, data.x_val, data.y_val,
                    data.x_test, data.y_test, 3, data.class_names, (64,), UNIT)
    with pytest.raises(TrainingError, match=r"data.augment: expected 2-D image samples"):
        fit(spec(*AUGMENT), flat)


def test_averaging_is_the_mean_of_the_last_epochs():
    data = pictures()
    # A constant schedule: the first 4 epochs of a 5-epoch run are a 4-epoch run.
    at4, at5 = fit(spec("train.epochs=4"), data), fit(spec(), data)
    averaged = fit(spec("train.averaging.last_epochs=2"), data)
    for name, array in averaged.network.state_dict().items():
        mean = (at4.network.state_dict()[name].astype(np.float64)
                + at5.network.state_dict()[name]) / 2
        np.testing.assert_array_equal(array, mean.astype(np.float32), err_msg=name)
    assert weights(fit(spec("train.averaging.last_epochs=1"), data)) == weights(at5)
    assert [r.val_loss for r in averaged.history] == [r.val_loss for r in at5.history]


@pytest.mark.parametrize("interrupt_at_step", [10, 25])
def test_interrupted_run_resumes_bit_for_bit_through_checkpoint_files(tmp_path, interrupt_at_step):
    overrides = (*AUGMENT, "train.averaging.last_epochs=3", 'train.schedule={ type = "cosine.v1" }')
    data = pictures()
    reference = fit(spec(*overrides), data)

    def interrupt(epoch, batch, loss, accuracy):
        if (epoch - 1) * 8 + batch == interrupt_at_step:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        fit(spec(*overrides), data, on_step=interrupt)
    # Through the pipeline's files, as `mlpspec run` would after Ctrl-C.
    info.value.checkpoint.save(tmp_path / "checkpoint")
    resumed = fit(spec(*overrides), data, resume=Checkpoint.load(tmp_path / "checkpoint"))
    assert weights(resumed) == weights(reference)


# ------------------------------------------------------------ the spec


def test_defaults_leave_existing_specs_unchanged():
    """A spec without `[data.augment]` or `[train.averaging]` trains as before they
    existed: nothing distorts the images (any distortion needs 2-D samples, so
    flat ones would be refused) and the weights are the last epoch's, not a mean."""
    parsed = spec()
    augment = parsed.data.augment
    assert (augment.translate, augment.rotate, augment.scale, augment.elastic_alpha) == (0, 0, 0, 0)
    data = pictures()
    flat = Prepared(data.x_train, data.y_train, data.t_train, data.x_val, data.y_val,
                    data.x_test, data.y_test, 3, data.class_names, (64,), UNIT)
    plain = fit(parsed, data)
    assert weights(fit(parsed, flat)) == weights(plain)
    assert weights(fit(spec("train.averaging.last_epochs=2"), data)) != weights(plain)
    assert weights(fit(spec("train.averaging.last_epochs=1"), data)) == weights(plain)


@pytest.mark.parametrize("overrides, expected", [
    (("data.augment.translate=1.5", "data.augment.whole_pixels=true"),
     "data.augment.translate: expected a whole number of pixels"),
    (("data.augment.whole_pixels=true",), "data.augment.whole_pixels: expected false"),
    (("data.augment.rotate=200",), "data.augment.rotate: expected a value in [0.0, 180.0]"),
    (("data.augment.scale=1.0",), "data.augment.scale: expected a value in [0.0, 1.0)"),
    (("train.averaging.last_epochs=6",), "train.averaging.last_epochs: expected at most train.epochs (5)"),
    (("train.averaging.last_epochs=2", "train.early_stopping.patience=2"),
     "train.averaging.last_epochs: expected 0 with early stopping"),
    (("train.averaging.last_epochs=2", 'network.layers[2]={ type = "batchnorm.v1" }'),
     "train.averaging.last_epochs: expected 0: network.layers[2] is 'batchnorm.v1'"),
])
def test_bad_settings_are_reported(overrides, expected):
    with pytest.raises(SpecError) as info:
        spec(*overrides)
    assert expected in str(info.value)


def test_mnist_spec_with_augmentation_is_valid():
    text = SPEC.replace('source = "npz"\ntrain = "train.npz"\ntest = "test.npz"\nclasses = 3',
                        'source = "mnist"').replace("inputs = 64", "inputs = 784").replace(
        "units = 3", "units = 10")
    assert parse_spec(text, "m.toml", AUGMENT).data.augment.rotate == 10


def test_augmentation_is_read_by_training_only(tmp_path):
    base = spec()
    changed = spec(*AUGMENT)
    (tmp_path / "train.npz").write_bytes(b"x")
    (tmp_path / "test.npz").write_bytes(b"x")
    before, _ = stage_keys(base, tmp_path)
    after, _ = stage_keys(changed, tmp_path)
    assert before["load"] == after["load"] and before["preprocess"] == after["preprocess"]
    assert before["train"] != after["train"]
