"""Write scikit-learn's bundled diabetes data as the npz files `specs/diabetes.toml` reads.

    pip install scikit-learn          # only for this tool; mlpspec does not need it
    python tools/make_regression_data.py [--out specs/data/diabetes]

The diabetes set (Efron et al. 2004, "Least Angle Regression"): 442 patients,
10 raw features (age, sex, body mass index, blood pressure, six blood serum
measurements; `scaled=False`, as measured) and one target, a measure of disease
progression one year after baseline (25 to 346). Written as `train.npz` (354
rows) and `test.npz` (88 rows), each with `x` float64 `(n, 10)` and `y` float64
`(n,)`; the rows are split by a fixed permutation (seed 0), so every run writes
the same bytes.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TEST_SHARE = 0.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "specs" / "data" / "diabetes",
                        help="folder for train.npz and test.npz")
    args = parser.parse_args()
    try:
        from sklearn.datasets import load_diabetes
    except ImportError:
        raise SystemExit("error: this tool needs scikit-learn: pip install scikit-learn") from None
    bunch = load_diabetes(scaled=False)
    x, y = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.float64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = int(round(TEST_SHARE * len(x)))
    splits = {"train": order[n_test:], "test": order[:n_test]}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        buffer = io.BytesIO()
        np.savez(buffer, x=x[np.sort(rows)], y=y[np.sort(rows)])
        (args.out / f"{name}.npz").write_bytes(buffer.getvalue())
        print(f"{args.out / f'{name}.npz'}: {len(rows)} rows, {x.shape[1]} features "
              f"({', '.join(bunch.feature_names)}), target: disease progression")


if __name__ == "__main__":
    main()
