"""scikit-learn's side of tools/bench_tabular.py; runs in the bench venv, never imports mlpspec.

    python tools/_sklearn_tabular.py dump OUT_DIR     # the datasets as OUT_DIR/<name>.npz
    python tools/_sklearn_tabular.py serve            # fit jobs: one JSON line in, one out

`dump` writes each dataset as `x (n, d) float64`, `y (n,)` (class indices or
float targets), `features (d,)` and `classes (k,)` (empty for regression).
`serve` reads jobs `{"data": npz, "hidden": [100], "seed": 0, "regression": false, "max_iter": 5000}`
where the npz holds `x_train, y_train, x_test, y_test`, and answers each with
`{"score": accuracy or R², "fit_seconds": wall time of Pipeline.fit, "n_iter": ...}`.
The model is scikit-learn's defaults with the given hidden sizes, a
StandardScaler in front and `max_iter` high enough to converge.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

MAX_ITER = 5000  # default; most datasets converge in a few hundred (see n_iter in the output)


def dump(out: Path) -> None:
    from sklearn import datasets

    loaders = {"digits": datasets.load_digits, "wine": datasets.load_wine,
               "breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris,
               "diabetes": datasets.load_diabetes}
    out.mkdir(parents=True, exist_ok=True)
    for name, load in loaders.items():
        bunch = load()
        classes = np.array([], dtype=str) if name == "diabetes" else np.asarray(bunch.target_names, dtype=str)
        features = [str(f) for f in getattr(bunch, "feature_names", [])]
        np.savez(out / f"{name}.npz", x=np.asarray(bunch.data, dtype=np.float64),
                 y=np.asarray(bunch.target), features=np.asarray(features, dtype=str),
                 classes=classes)


def fit_job(job: dict) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with np.load(job["data"], allow_pickle=False) as arrays:
        data = {key: arrays[key] for key in arrays.files}
    kind = MLPRegressor if job["regression"] else MLPClassifier
    model = make_pipeline(StandardScaler(), kind(hidden_layer_sizes=tuple(job["hidden"]),
                                                 max_iter=job.get("max_iter", MAX_ITER), random_state=job["seed"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        started = time.perf_counter()
        model.fit(data["x_train"], data["y_train"])
        seconds = time.perf_counter() - started
    score = model.score(data["x_test"], data["y_test"])  # accuracy, or R² for a regressor
    return {"score": float(score), "fit_seconds": seconds, "n_iter": int(model[-1].n_iter_),
            "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}


def versions() -> dict:
    import sklearn
    from threadpoolctl import threadpool_info

    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return {"sklearn": sklearn.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "blas_threads": max(blas, default=None)}


def serve() -> None:
    print(json.dumps(versions()), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(fit_job(json.loads(line))), flush=True)


def main() -> None:
    command = sys.argv[1:2]
    if command == ["dump"] and len(sys.argv) == 3:
        dump(Path(sys.argv[2]))
    elif command == ["serve"]:
        serve()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
