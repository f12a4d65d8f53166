"""mlpspec against scikit-learn's MLPClassifier / MLPRegressor on small tabular datasets.

    python tools/bench_tabular.py [--seeds 5] [--dataset NAME]... [--hidden 100] \\
        [--threads N] [--sklearn-python PATH]

Datasets (scikit-learn's bundled ones): digits (8x8 pixels 0-16, 10 classes),
wine, breast cancer, iris (classification, test accuracy) and diabetes
(regression, test R²). For each seed both sides get the same split: 25 % of
the samples held out for test, stratified by class, drawn from the seed. The
sides alternate (mlpspec, sklearn, mlpspec, sklearn, ...) so a change in the
machine's load hits both.

mlpspec goes the way a user goes: the split is written as CSV files with a
header and string class labels, a spec is written next to them, and
`mlpspec run SPEC --json` runs in a fresh process with a fresh cache. Its
recipe, the same for every dataset: standardised inputs, one ReLU hidden
layer of 100 units, Glorot-uniform weights (sklearn's initialiser), Adam at
1e-3, L2 1e-4 (sklearn's alpha, same scaling), batch min(200, n), up to 2000
epochs with early stopping on the loss of a stratified 10 % of the training
part (patience 10 epochs, improvements under 1e-4 do not count, as sklearn's
tol; the best epoch restored). `--stopping train` uses scikit-learn's own
rule instead: the whole training part trains and the run stops when the
training loss has not improved by 1e-4 for 10 epochs
(`train.early_stopping.metric = "train_loss"`); measured, it overfits the
small sets (diabetes R² 0.05 against 0.44), so it is not the default. `--refit` adds a second
run on the whole training part for the best epoch count (its time is added).
scikit-learn: its defaults, the same hidden sizes, `max_iter = 5000`
(`--max-iter`), behind a StandardScaler in a Pipeline; it trains on the
whole training part and stops when its training loss stalls. The recipe was
chosen on holdouts carved from the training parts, never on the test splits
(see the README, Benchmarks).

Fit time: mlpspec's `train_seconds` (the training loop including the
per-epoch validation pass; not loading, preprocessing, evaluation or export)
against the wall time of sklearn's `Pipeline.fit` (scaler and network).

scikit-learn is a measuring tool, not a dependency of mlpspec: it runs in a
subprocess (tools/_sklearn_tabular.py) in `--sklearn-python`, by default the
interpreter itself if it has scikit-learn, else a venv made once at
`${TMPDIR:-/tmp}/mlpspec-tabular-bench-venv`. The last line printed is one
JSON object. Timings are wall-clock: noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mlpspec
from mlpspec import rng

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"
DATASETS = ("digits", "wine", "breast_cancer", "iris", "diabetes")
REGRESSION = {"diabetes"}
TEST_SHARE = 0.25
SKLEARN_REQUIREMENTS = ("scikit-learn", "threadpoolctl")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# The general recipe: nothing in it depends on the dataset but its shape.
RECIPE = {"scale": "standardize", "init": "glorot_uniform", "optimizer": "adam.v1", "learning_rate": 1e-3, "l2": 1e-4,
          "batch_size": 200, "epochs": 2000, "patience": 10, "min_delta": 1e-4, "validation": 0.1,
          "metric": {"classification": "loss", "regression": "loss"}, "refit": False,
          "stopping": "validation"}

SPEC = """\
spec_version = 1
name = "bench-{name}"
task = "{task}"
seed = {seed}

[data]
source = "csv"
train = "train.csv"
test = "test.csv"
header = true
label_column = "label"

[data.preprocess]
scale = "{scale}"

{validation_table}

[network]
inputs = {inputs}
layers = [{layers}]

[train]
epochs = {epochs}
batch_size = {batch_size}
loss = {{ type = "{loss}" }}
optimizer = {{ type = "{optimizer}", learning_rate = {learning_rate} }}
regularization = {{ l2 = {l2} }}
{early_stopping}
"""


def spec_text(name: str, *, seed: int, inputs: int, outputs: int, hidden: tuple[int, ...],
              regression: bool, refit_epochs: int | None = None) -> str:
    """The recipe as a spec for a `train.csv` / `test.csv` pair beside it.

    With `refit_epochs`, the refit pass: the whole training part for that many
    epochs, no validation split and no early stopping.
    """
    init = RECIPE["init"]
    layers = [f'{{ type = "dense.v1", units = {units}, init = "{init}" }}, {{ type = "relu.v1" }}'
              for units in hidden]
    layers.append(f'{{ type = "dense.v1", units = {outputs}, init = "{init}" }}')
    task = "regression" if regression else "classification"
    if refit_epochs is None and RECIPE["stopping"] == "train":
        # scikit-learn's own rule: all of the training part trains, and the run stops
        # when the training loss has not improved by 1e-4 for 10 epochs.
        validation = '[data.validation]\ntake_from = "none"'
        early = (f'early_stopping = {{ patience = {RECIPE["patience"]}, '
                 f'min_delta = {RECIPE["min_delta"]}, metric = "train_loss" }}')
    elif refit_epochs is None:
        validation = (f'[data.validation]\ntake_from = "train"\nsize = {RECIPE["validation"]}\n'
                      f'stratify = {str(not regression).lower()}')
        early = (f'early_stopping = {{ patience = {RECIPE["patience"]}, '
                 f'min_delta = {RECIPE["min_delta"]}, metric = "{RECIPE["metric"][task]}" }}')
    else:
        validation, early = '[data.validation]\ntake_from = "none"', ""
    return SPEC.format(name=name, task=task, seed=seed, inputs=inputs, layers=", ".join(layers),
                       loss="mse.v1" if regression else "softmax_cross_entropy.v1",
                       validation_table=validation, early_stopping=early,
                       **{**RECIPE, "epochs": refit_epochs or RECIPE["epochs"]})


def split(y: np.ndarray, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sorted `(train, test)` indices, TEST_SHARE of each class (or of all) for test."""
    generator = rng.generator(seed, "bench-tabular/split")
    groups = [np.flatnonzero(y == value) for value in np.unique(y)] if stratify else [np.arange(len(y))]
    test = []
    for members in groups:
        members = generator.permutation(members)
        test.extend(members[: int(round(len(members) * TEST_SHARE))])
    test = np.sort(np.asarray(test, dtype=np.int64))
    return np.setdiff1d(np.arange(len(y)), test), test


def write_csv(path: Path, features: list[str], X: np.ndarray, labels: list[str]) -> None:
    """A CSV with a header row, the features (exact float reprs) and a last column `label`."""
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([*features, "label"])
        for row, label in zip(X, labels):
            writer.writerow([*map(repr, row.tolist()), label])


def column_names(features, width: int) -> list[str]:
    names = [str(f).replace(" ", "_") for f in features] or [f"x{i}" for i in range(width)]
    return names if len(set(names)) == width else [f"x{i}" for i in range(width)]


def run_mlpspec(folder: Path, name: str, *, seed: int, X_train, labels_train, X_test, labels_test,
                features: list[str], outputs: int, hidden: tuple[int, ...], regression: bool) -> dict:
    """Write the split and the spec into `folder`, run `mlpspec run --json`; the test score and times.

    `labels_*` are class names (strings) or float targets. Returns `score`
    (test accuracy or R²), `train_seconds`, `epochs_run`, `best_epoch`. With
    RECIPE["refit"], a second run trains on the whole training part for the
    first run's best epoch count: `score` is the refit's, `train_seconds` the
    sum of both runs, `early_stopped_score` the first run's.
    """
    folder.mkdir(parents=True, exist_ok=True)
    as_text = (lambda v: repr(float(v))) if regression else str
    write_csv(folder / "train.csv", features, X_train, [as_text(v) for v in labels_train])
    write_csv(folder / "test.csv", features, X_test, [as_text(v) for v in labels_test])
    first = _run_spec(folder, "spec.toml", spec_text(
        name, seed=seed, inputs=X_train.shape[1], outputs=outputs, hidden=hidden,
        regression=regression), f"{name} seed {seed}")
    result = {"score": first["score"], "train_seconds": first["train_seconds"],
              "epochs_run": first["epochs_run"], "best_epoch": first["best_epoch"]}
    if RECIPE["refit"]:
        second = _run_spec(folder, "refit.toml", spec_text(
            name, seed=seed, inputs=X_train.shape[1], outputs=outputs, hidden=hidden,
            regression=regression, refit_epochs=first["best_epoch"]), f"{name} seed {seed} refit")
        result.update(score=second["score"], early_stopped_score=first["score"],
                      train_seconds=first["train_seconds"] + second["train_seconds"],
                      refit_epochs=second["epochs_run"])
    return result


def _run_spec(folder: Path, file: str, text: str, what: str) -> dict:
    """`mlpspec run` on `text` saved as `folder/file`, with its own fresh cache and run folder."""
    spec = folder / file
    spec.write_text(text)
    stem = spec.stem
    command = [sys.executable, "-c", "from mlpspec.cli import app; app(prog_name='mlpspec')",
               "run", str(spec), "--json", "--cache-dir", str(folder / f"cache-{stem}"),
               "--out", str(folder / f"run-{stem}")]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"mlpspec run failed on {what}:\n{done.stdout}{done.stderr}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    test = summary["test"]
    return {"score": test["r2"] if "r2" in test else test["accuracy"],
            "train_seconds": summary["train_seconds"], "epochs_run": summary["epochs_run"],
            "best_epoch": summary["best_epoch"]}


class SklearnPeer:
    """tools/_sklearn_tabular.py serving fit jobs in `python`, one JSON line each way."""

    def __init__(self, python: str):
        self.process = subprocess.Popen([python, str(TOOLS / "_sklearn_tabular.py"), "serve"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.versions = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the scikit-learn peer ended without an answer (see its error above)")
        return json.loads(line)

    def fit(self, job: dict) -> dict:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def sklearn_python(given: str | None) -> str:
    """The interpreter for scikit-learn: `given`, this one if it has sklearn, or the bench venv."""
    if given:
        return given
    probe = "import sklearn, threadpoolctl"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
        return sys.executable
    venv = Path(os.environ.get("TMPDIR", "/tmp")) / "mlpspec-tabular-bench-venv"
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return str(python)
    print(f"creating {venv} with {' '.join(SKLEARN_REQUIREMENTS)} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *SKLEARN_REQUIREMENTS],
                   check=True, stdout=sys.stderr)
    return str(python)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds (splits) per dataset (default 5)")
    parser.add_argument("--dataset", action="append", choices=DATASETS,
                        help="dataset to run (repeatable; default all)")
    parser.add_argument("--hidden", default="100",
                        help="hidden layer sizes, comma-separated (default 100, sklearn's default)")
    parser.add_argument("--sklearn-python", help="python with scikit-learn (default: this one if "
                        "it has it, else a venv in ${TMPDIR:-/tmp}/mlpspec-tabular-bench-venv)")
    parser.add_argument("--max-iter", type=int, default=5000,
                        help="sklearn's max_iter (default 5000; diabetes needs more to converge)")
    parser.add_argument("--stopping", choices=("train", "validation"), default="validation",
                        help="early stopping on a 10 %% validation split (default) or on the "
                             "training loss over the whole training part (scikit-learn's rule)")
    parser.add_argument("--refit", action="store_true", help="after early stopping, train again "
                        "on the whole training part for the best epoch count (time: both runs)")
    parser.add_argument("--threads", type=int, help="BLAS/OpenMP threads for both sides "
                        "(default: the libraries' own choice)")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads: expected a positive integer, found {args.threads}")
        for variable in THREAD_VARIABLES:  # inherited by both sides' processes
            os.environ[variable] = str(args.threads)
    RECIPE["refit"] = args.refit
    RECIPE["stopping"] = args.stopping
    if args.seeds < 1:
        parser.error(f"--seeds: expected a positive integer, found {args.seeds}")
    try:
        hidden = tuple(int(units) for units in args.hidden.split(","))
    except ValueError:
        parser.error(f"--hidden: expected sizes such as 100 or 64,32, found {args.hidden!r}")
    names = [name for name in DATASETS if name in (args.dataset or DATASETS)]
    peer = SklearnPeer(sklearn_python(args.sklearn_python))
    loads = [os.getloadavg()]
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="mlpspec-bench-tabular-") as tmp:
        tmp = Path(tmp)
        subprocess.run([peer.process.args[0], str(TOOLS / "_sklearn_tabular.py"), "dump",
                        str(tmp / "datasets")], check=True)
        for name in names:
            regression = name in REGRESSION
            with np.load(tmp / "datasets" / f"{name}.npz", allow_pickle=False) as arrays:
                X, y = arrays["x"], arrays["y"]
                features = column_names(arrays["features"].tolist(), X.shape[1])
                classes = arrays["classes"].tolist()
            labels = y.astype(np.float64) if regression else np.asarray(classes, dtype=object)[y]
            runs = []
            for seed in range(args.seeds):
                print(f"{name} seed {seed}: mlpspec, then sklearn ...", file=sys.stderr)
                train, test = split(y, seed, stratify=not regression)
                ours = run_mlpspec(tmp / name / f"seed{seed}", name, seed=seed,
                                   X_train=X[train], labels_train=labels[train],
                                   X_test=X[test], labels_test=labels[test], features=features,
                                   outputs=1 if regression else len(classes), hidden=hidden,
                                   regression=regression)
                job_data = tmp / name / f"seed{seed}" / "split.npz"
                np.savez(job_data, x_train=X[train], y_train=y[train], x_test=X[test], y_test=y[test])
                theirs = peer.fit({"data": str(job_data), "hidden": list(hidden), "seed": seed,
                                   "regression": regression, "max_iter": args.max_iter})
                runs.append({"seed": seed, "n_train": len(train), "n_test": len(test),
                             "mlpspec": ours, "sklearn": theirs})
                loads.append(os.getloadavg())
            results.append(summarise(name, regression, runs))
    peer.close()
    wall = time.perf_counter() - started
    print_report(results, peer.versions, loads, hidden, args.seeds, wall, args.threads, args.max_iter)


def summarise(name: str, regression: bool, runs: list[dict]) -> dict:
    row = {"dataset": name, "metric": "r2" if regression else "accuracy",
           "n_train": runs[0]["n_train"], "n_test": runs[0]["n_test"], "runs": runs}
    for side, seconds in (("mlpspec", "train_seconds"), ("sklearn", "fit_seconds")):
        scores = [run[side]["score"] for run in runs]
        row[f"{side}_mean"], row[f"{side}_std"] = mean_std(scores)
        row[f"{side}_fit_s"] = statistics.fmean(run[side][seconds] for run in runs)
    row["mlpspec_epochs"] = statistics.fmean(run["mlpspec"]["epochs_run"] for run in runs)
    row["sklearn_iters"] = statistics.fmean(run["sklearn"]["n_iter"] for run in runs)
    row["sklearn_converged"] = all(run["sklearn"]["converged"] for run in runs)
    row["score_ratio"] = row["mlpspec_mean"] / row["sklearn_mean"]
    row["time_ratio"] = row["mlpspec_fit_s"] / row["sklearn_fit_s"]
    row["at_least_equal"] = row["mlpspec_mean"] >= row["sklearn_mean"] - 1e-9  # float noise of a mean
    row["faster"] = row["time_ratio"] < 1.0
    return row


def print_report(results: list[dict], peer_versions: dict, loads: list, hidden, seeds: int,
                 wall: float, threads: int | None, max_iter: int) -> None:
    load1 = [load[0] for load in loads]
    print(f"{seeds} seeds per dataset, hidden {list(hidden)}, test share {TEST_SHARE}, "
          f"BLAS threads {threads or 'default'}; "
          f"score = test accuracy (classification) or R² (regression), mean ± std over seeds")
    print("fit s: mlpspec train_seconds (training loop incl. per-epoch validation) vs "
          "sklearn Pipeline.fit wall time (scaler + network); time ratio = mlpspec / sklearn")
    header = (f"{'dataset':14} {'metric':8} {'mlpspec':>15} {'sklearn':>15} {'score ratio':>11} "
              f"{'mlpspec fit s':>13} {'sklearn fit s':>13} {'time ratio':>10} "
              f"{'epochs':>7} {'sk iters':>8}")
    print(header)
    for row in results:
        print(f"{row['dataset']:14} {row['metric']:8} "
              f"{row['mlpspec_mean']:8.4f} ± {row['mlpspec_std']:.3f} "
              f"{row['sklearn_mean']:8.4f} ± {row['sklearn_std']:.3f} {row['score_ratio']:11.3f} "
              f"{row['mlpspec_fit_s']:13.3f} {row['sklearn_fit_s']:13.3f} {row['time_ratio']:10.2f} "
              f"{row['mlpspec_epochs']:7.0f} {row['sklearn_iters']:8.0f}"
              f"{'' if row['sklearn_converged'] else ' (max_iter reached)'}")
    met_score = all(row["at_least_equal"] for row in results)
    met_time = all(row["faster"] for row in results)
    print(f"1-min load average {min(load1):.2f}..{max(load1):.2f} during the run "
          f"({os.cpu_count()} cores; wall {wall:.0f} s); aim: mlpspec mean >= sklearn on every "
          f"dataset: {met_score}; faster fit on every dataset: {met_time}")
    settings = {"seeds": seeds, "threads": threads, "hidden": list(hidden), "test_share": TEST_SHARE,
                "split": "stratified by class (regression: random), from mlpspec.rng(seed)",
                "order": "ABAB: per seed mlpspec then sklearn",
                "mlpspec_recipe": RECIPE, "sklearn_recipe": {"defaults": True, "max_iter": max_iter,
                                                            "scaler": "StandardScaler"},
                "fit_time": {"mlpspec": "train_seconds", "sklearn": "Pipeline.fit wall time"}}
    versions = {"mlpspec": mlpspec.__version__,
                "numpy": np.__version__, "python": platform.python_version(),
                "sklearn": peer_versions.get("sklearn"),
                "sklearn_numpy": peer_versions.get("numpy"),
                "sklearn_blas_threads": peer_versions.get("blas_threads")}
    machine = {"cpus": os.cpu_count(), "load_1min": [round(v, 2) for v in load1],
               "load_before": [round(v, 2) for v in loads[0]],
               "load_after": [round(v, 2) for v in loads[-1]], "wall_seconds": round(wall, 1)}
    print(json.dumps({"results": results, "met": {"score": met_score, "time": met_time},
                      "settings": settings, "versions": versions, "machine": machine}))


if __name__ == "__main__":
    main()
