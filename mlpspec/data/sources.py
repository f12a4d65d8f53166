"""The built-in dataset catalogue, under its older name: it lives in `mlpspec.datasets`.

The catalogue moved out of `mlpspec.data` so that `mlpspec.spec` can check a
spec against it without importing the data package (which imports the spec).
"""

from mlpspec.datasets import (
    BUILTIN_DATASETS, FASHION_MNIST, MNIST, ROLES, BuiltinDataset, RemoteFile, get_builtin,
)

__all__ = ["BUILTIN_DATASETS", "FASHION_MNIST", "MNIST", "ROLES", "BuiltinDataset", "RemoteFile",
           "get_builtin"]
