"""Built-in datasets: which files make them up, how to verify them, where to get them.

A catalogue of facts only (no data is read here), so both the spec checks
(`mlpspec.spec`) and the loaders (`mlpspec.data`) can import it without either
package depending on the other.

Checksums and sizes are of the *decompressed* IDX payloads, so any faithful
mirror passes whatever gzip settings it used, and any corruption fails.
Mirrors serve `<filename>.gz` (or `<filename>`) under their base URL.

A dataset's meaning must never change under its name: a new release or a
different file set gets a new name in `BUILTIN_DATASETS`.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

import attrs

from mlpspec.errors import DataError

#: The four files of a train/test image classification dataset.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@attrs.frozen
class RemoteFile:
    """One dataset file: its decompressed name, sha256 (hex) and size in bytes."""

    filename: str
    sha256: str
    size: int


def _read_only(files: Mapping[str, RemoteFile]) -> Mapping[str, RemoteFile]:
    return types.MappingProxyType(dict(files))


def _check_roles(instance, attribute, files: Mapping[str, RemoteFile]) -> None:
    if tuple(files) != ROLES:
        raise ValueError(f"{attribute.name} must have the roles {ROLES} in order, got {tuple(files)}")


@attrs.frozen
class BuiltinDataset:
    """A dataset mlpspec knows how to fetch and verify.

    `files` maps each role in `ROLES` to its `RemoteFile`; `mirrors` are base
    URLs tried in order; images have shape `image_shape` (rows, cols) and
    labels are integers in `[0, classes)` named by `class_names`.
    """

    name: str
    files: Mapping[str, RemoteFile] = attrs.field(converter=_read_only, validator=_check_roles)
    mirrors: tuple[str, ...]
    classes: int
    image_shape: tuple[int, int]
    class_names: tuple[str, ...]


def _mnist_style_files(sha256: Mapping[str, str]) -> dict[str, RemoteFile]:
    """The four MNIST file names and sizes with the given checksums."""
    layout = {
        "train_images": ("train-images-idx3-ubyte", 47040016),
        "train_labels": ("train-labels-idx1-ubyte", 60008),
        "test_images": ("t10k-images-idx3-ubyte", 7840016),
        "test_labels": ("t10k-labels-idx1-ubyte", 10008),
    }
    return {role: RemoteFile(name, sha256[role], size) for role, (name, size) in layout.items()}


MNIST = BuiltinDataset(
    name="mnist",
    files=_mnist_style_files(
        {
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        }
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    classes=10,
    image_shape=(28, 28),
    class_names=tuple(str(digit) for digit in range(10)),
)

FASHION_MNIST = BuiltinDataset(
    name="fashion-mnist",
    files=_mnist_style_files(
        {
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        }
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    classes=10,
    image_shape=(28, 28),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

#: Name -> dataset; the only way a dataset name is resolved.
BUILTIN_DATASETS: dict[str, BuiltinDataset] = {d.name: d for d in (MNIST, FASHION_MNIST)}


def get_builtin(name: str) -> BuiltinDataset:
    """Look up a built-in dataset, failing with the list of known names."""
    try:
        return BUILTIN_DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise DataError(f"unknown built-in dataset {name!r} (known: {known})") from None
