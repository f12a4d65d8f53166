"""`mlpspec predict` on real inputs (issue 10): photos of any size, dark ink on light
paper, `.npz` and `.csv` files, and a batch with a bad file in it.

A small MNIST model (784-64-10, 1 epoch) is trained once per test session
through `mlpspec run`; real MNIST test digits are then drawn as a user's
photos would be (upscaled to about 150 px, placed off-centre on a 200x200 or
200x160 canvas, dark on light) and must get the labels the original 28x28
digits get.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlpspec.data.idx import read_idx_file

from conftest import _session_home, invoke, mnist_mirror

Image = pytest.importorskip("PIL.Image")

V1_0 = Path(__file__).parent / "model_files" / "v1.0.mlpm"
PINNED_INPUTS = np.arange(2 * 16, dtype=np.uint8).reshape(2, 4, 4) * 7
DIGITS = 120  # MNIST test digits drawn as photos

SPEC = """spec_version = 1
name = "mnist-small"
seed = 0
[data]
source = "mnist"
[network]
inputs = 784
[[network.layers]]
type = "dense.v1"
units = 64
[[network.layers]]
type = "relu.v1"
[[network.layers]]
type = "dense.v1"
units = 10
[train]
epochs = 1
[train.optimizer]
type = "momentum.v1"
learning_rate = 0.05
"""





@pytest.fixture(scope="session")
def mnist_model(tmp_path_factory) -> Path:
    """A 784-64-10 MNIST model trained for 1 epoch through `mlpspec run`, once per session."""
    mirror = mnist_mirror()
    if mirror is None:
        pytest.skip("the local MNIST copy (../shared/data/mnist) is not available")
    folder = tmp_path_factory.mktemp("mnist-model")
    (folder / "spec.toml").write_text(SPEC)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLPSPEC_MIRRORS", str(mirror))
        patch.setenv("MLPSPEC_HOME", str(_session_home(tmp_path_factory)))
        result = invoke("run", folder / "spec.toml", "--out", folder / "run",
                        "--cache-dir", folder / "cache", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "run" / "model.mlpm"


@pytest.fixture(scope="session")
def test_digits() -> np.ndarray:
    mirror = mnist_mirror()
    if mirror is None:
        pytest.skip("the local MNIST copy (../shared/data/mnist) is not available")
    return read_idx_file(mirror / "t10k-images-idx3-ubyte.gz")[:DIGITS]


def photo(digit: np.ndarray, index: int) -> np.ndarray:
    """A 28x28 MNIST digit as a user's photo: about 150 px, off-centre, dark on light paper
    (grey 235, ink near 20), on a 200x200 or (every third) 200-wide 160-tall canvas."""
    size = 140 + index % 3 * 10
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR))
    height = 160 if index % 3 == 0 else 200
    canvas = np.zeros((height, 200), np.uint8)
    top, left = (height - size) * (index % 4) // 4 + 2, (200 - size) * (index % 5) // 5 + 3
    canvas[top:top + size, left:left + size] = big
    return (235 - canvas.astype(np.float64) * (215 / 255)).round().astype(np.uint8)


def predicted(result) -> dict[str, int]:
    """Input path -> predicted class, from `predict --json` output (stdout only)."""
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(row["input"]).name: row["top"][0]["class"] for row in rows}


def test_photos_of_any_size_dark_on_light_get_the_originals_labels(mnist_model, test_digits,
                                                                   tmp_path):
    np.save(tmp_path / "originals.npy", test_digits)
    originals = invoke("predict", mnist_model, tmp_path / "originals.npy", "--json")
    assert originals.exit_code == 0, originals.output
    expected = [json.loads(line)["top"][0]["class"] for line in originals.stdout.splitlines()]
    names = []
    for i, digit in enumerate(test_digits):
        names.append(f"photo{i:03}.png")
        Image.fromarray(photo(digit, i)).save(tmp_path / names[-1])
    result = invoke("predict", mnist_model, *(tmp_path / n for n in names), "--json")
    assert result.exit_code == 0, result.output
    got = predicted(result)
    agreement = np.mean([got[n] == e for n, e in zip(names, expected)])
    # Measured: 0.992 (119 of 120) with this 1-epoch model. Without resizing the
    # photos were refused; resized but not inverted they get one label for all.
    assert agreement >= 0.9, agreement
    assert result.stderr.count("dark on a light background: inverted") == DIGITS

    # --invert no takes the light paper for ink: the answers no longer follow the digits.
    kept = invoke("predict", mnist_model, *(tmp_path / n for n in names[:20]), "--json",
                  "--invert", "no")
    assert kept.exit_code == 0, kept.output
    plain = predicted(kept)
    assert np.mean([plain[n] == e for n, e in zip(names[:20], expected)]) <= 0.5
    assert "inverted" not in kept.stderr
    # --invert yes on the photos is what auto chose.
    forced = invoke("predict", mnist_model, *(tmp_path / n for n in names[:20]), "--json",
                    "--invert", "yes")
    assert predicted(forced) == {n: got[n] for n in names[:20]} and forced.stderr == ""


def test_light_on_dark_photos_are_not_inverted(mnist_model, test_digits, tmp_path):
    """A large white-on-black digit (as MNIST's own) is resized, not inverted."""
    expected = invoke("predict", mnist_model, _npy(tmp_path, test_digits[:10]), "--json")
    names = []
    for i, digit in enumerate(test_digits[:10]):
        names.append(f"big{i}.png")
        Image.fromarray(255 - photo(digit, i)).save(tmp_path / names[-1])
    result = invoke("predict", mnist_model, *(tmp_path / n for n in names), "--json")
    assert result.exit_code == 0 and "inverted" not in result.stderr
    want = [json.loads(line)["top"][0]["class"] for line in expected.stdout.splitlines()]
    got = predicted(result)
    assert np.mean([got[n] == w for n, w in zip(names, want)]) >= 0.8


def test_model_sized_image_is_taken_as_it_is(mnist_model, test_digits, tmp_path):
    """A 28x28 PNG of an MNIST digit gives exactly the .npy sample's scores."""
    Image.fromarray(test_digits[0]).save(tmp_path / "digit.png")
    png = invoke("predict", mnist_model, tmp_path / "digit.png", "--json", "--top", "3")
    npy = invoke("predict", mnist_model, _npy(tmp_path, test_digits[0]), "--json", "--top", "3")
    assert json.loads(png.stdout)["top"] == json.loads(npy.stdout)["top"]


def _npy(folder: Path, array: np.ndarray) -> Path:
    path = folder / f"a{len(list(folder.glob('a*.npy')))}.npy"
    np.save(path, array)
    return path


def test_a_bad_file_does_not_stop_the_batch(mnist_model, test_digits, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo(test_digits[i], i)).save(folder / f"d{i}.png")
    (folder / "d1b.png").write_bytes(b"\x89PNG\r\n\x1a\ncorrupt")
    files = sorted(folder.iterdir())
    result = invoke("predict", mnist_model, *files)
    assert result.exit_code == 2
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == \
        [str(folder / n) for n in ("d0.png", "d1.png", "d2.png")]
    assert f"error: {folder / 'd1b.png'}: cannot read the image" in result.stderr
    assert result.stderr.splitlines()[-1] == ("error: 1 of 4 inputs failed (reported above); "
                                              "the others were predicted")


def test_npz_and_csv_inputs(tmp_path):
    """`.npz` (array x, or the only array) and `.csv` (rows of raw values, an optional
    header) give the scores of the same samples as `.npy`."""
    np.save(tmp_path / "a.npy", PINNED_INPUTS)
    np.savez(tmp_path / "x.npz", x=PINNED_INPUTS, y=np.array([0, 1]))
    np.savez(tmp_path / "only.npz", PINNED_INPUTS)
    rows = PINNED_INPUTS.reshape(2, 16)
    (tmp_path / "plain.csv").write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    (tmp_path / "header.csv").write_text(",".join(f"p{i}" for i in range(16)) + "\n"
                                         + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    reference = invoke("predict", V1_0, tmp_path / "a.npy", "--json", "--top", "3").stdout
    for name in ("x.npz", "only.npz", "plain.csv", "header.csv"):
        result = invoke("predict", V1_0, tmp_path / name, "--json", "--top", "3")
        assert result.exit_code == 0, (name, result.output)
        assert [json.loads(line)["top"] for line in result.stdout.splitlines()] == \
            [json.loads(line)["top"] for line in reference.splitlines()], name

    np.savez(tmp_path / "two.npz", a=PINNED_INPUTS, b=PINNED_INPUTS)
    (tmp_path / "labelled.csv").write_text("\n".join("1," + ",".join(map(str, r)) for r in rows))
    result = invoke("predict", V1_0, tmp_path / "two.npz", tmp_path / "labelled.csv")
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'two.npz'}: expected an array named x or a single array, " \
           f"found a, b" in result.stderr
    assert f"error: {tmp_path / 'labelled.csv'}: line 1: expected 16 values per row (the " \
           f"model's samples have 16 features), found 17 (a label column? remove it)" in result.stderr


def test_invert_flag_is_checked(tmp_path):
    np.save(tmp_path / "a.npy", PINNED_INPUTS)
    result = invoke("predict", V1_0, tmp_path / "a.npy", "--invert", "maybe")
    assert result.exit_code == 2
    assert result.stderr == "error: --invert: expected one of auto, yes, no, found 'maybe'\n"


@pytest.mark.parametrize("name", ["data.csv", "data.npz"])
def test_evaluate_on_a_data_file_says_what_it_accepts(tmp_path, name):
    (tmp_path / "data.csv").write_text("0,1,2\n1,3,4\n")
    np.savez(tmp_path / "data.npz", x=np.zeros((2, 2)), y=np.array([0, 1]))
    result = invoke("evaluate", V1_0, "--on", tmp_path / name)
    assert result.exit_code == 2
    assert "invalid TOML" not in result.output
    assert f"--on '{tmp_path / name}' is a data file; --on takes a built-in dataset (mnist, " \
           f"fashion-mnist) or a spec file (TOML) whose [data] table names the files" in result.stderr
