"""Write scikit-learn's bundled tabular datasets as the CSV files the specs in specs/ read.

    pip install scikit-learn          # only for this tool; mlpspec does not need it
    python tools/make_tabular_data.py # writes specs/data/wine-{train,test}.csv, ...

Each dataset becomes a train and a test CSV with a header row of the feature
names and a last column `label` holding the class NAME (`class_0`, ...) or,
for regression, the target. The split is stratified for classification
(25 % test) and fixed by a seed, so the files are the same on every run. The
repository ships the output (a few tens of KB), so the specs run without
scikit-learn; this tool is how they were made.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

DATASETS = ("wine", "breast_cancer", "iris", "diabetes")


def _load(name: str):
    from sklearn import datasets  # imported here: an optional tool dependency

    loaders = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer,
               "iris": datasets.load_iris, "diabetes": datasets.load_diabetes}
    return loaders[name]()


def split(n: int, labels: np.ndarray | None, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted `(train, test)` row indices; stratified by `labels` when given."""
    generator = np.random.default_rng(seed)
    if labels is None:
        order = generator.permutation(n)
        cut = int(round(n * test_share))
        return np.sort(order[cut:]), np.sort(order[:cut])
    test = []
    for value in np.unique(labels):
        members = generator.permutation(np.flatnonzero(labels == value))
        test.extend(members[: int(round(len(members) * test_share))])
    test = np.sort(np.array(test))
    return np.setdiff1d(np.arange(n), test), test


def write(path: Path, header: list[str], X: np.ndarray, y: list) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        for row, target in zip(X, y):
            writer.writerow([repr(float(v)) if not float(v).is_integer() else str(int(v)) for v in row]
                            + [target])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "specs" / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(DATASETS)} (default: all)")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset {unknown[0]!r}; choose from {', '.join(DATASETS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or DATASETS:
        bunch = _load(name)
        X, target = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
        regression = name == "diabetes"
        header = [str(f).replace(" ", "_") for f in bunch.feature_names] + ["label"]
        if regression:
            y = [repr(float(v)) for v in target]
        else:
            y = [str(bunch.target_names[k]) for k in target]
        train, test = split(len(X), None if regression else target, 0.25, args.seed)
        stem = name.replace("_", "-")
        for part, rows in (("train", train), ("test", test)):
            path = args.out / f"{stem}-{part}.csv"
            write(path, header, X[rows], [y[i] for i in rows])
            print(f"wrote {path} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
