"""The `mlpspec` command line.

Commands are thin: they parse arguments, call the library and print. Every
user error is an `MlpspecError`, printed as a message with exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlpspec import cli_model
from mlpspec.cli_support import fail as _fail, user_errors

app = typer.Typer(
    name="mlpspec",
    help="Train NumPy MLPs from declarative TOML specs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Fetch and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

SpecArg = Annotated[Path, typer.Argument(help="Spec file (TOML).", show_default=False)]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a spec key, e.g. --set train.epochs=3 (repeatable; TOML values)."),
]


def _load(spec: Path, overrides: list[str] | None):
    from mlpspec.spec import load_spec

    return load_spec(spec, overrides or ())


def _load_checked(spec: Path, overrides: list[str] | None):
    """The spec, checked against its local data files too (their headers and counts),
    so that `validate` and `run` refuse the same specs before any training."""
    from mlpspec.data.check import check_spec_against_data
    from mlpspec.errors import SpecError

    loaded = _load(spec, overrides)
    problems = check_spec_against_data(loaded, spec.parent, source=str(spec))
    if problems:
        raise SpecError(problems)
    return loaded


@app.command()
@user_errors
def validate(spec: SpecArg, set_: SetOption = None) -> None:
    """Check a spec and its local data files (headers and counts); exit 2 with every problem.

    Each problem names the file and key and says how to fix it; exit 0 when valid.
    """
    loaded = _load_checked(spec, set_)
    from mlpspec.spec.model import CsvSource

    if loaded.task == "regression" or isinstance(loaded.data.source, CsvSource):
        _validate_targets(loaded, spec.parent)
    typer.echo(f"{spec}: valid")


def _validate_targets(spec, base: Path) -> None:
    """Regression: the number of targets is known only from the data, so read it. A CSV
    file's input count (column selection, one input per category of the training split)
    is known only once it is prepared, so prepare it."""
    from mlpspec.data.prepare import load_raw, prepare
    from mlpspec.pipeline import check_features, check_targets

    raw = load_raw(spec.data, base, task=spec.task)
    if spec.task == "regression":
        check_targets(spec, raw.y_train.shape[1])
    if raw.columns:  # a CSV file
        check_features(spec, prepare(raw, spec.data, spec.seed, spec.train.precision))


@app.command()
@user_errors
def render(spec: SpecArg, set_: SetOption = None) -> None:
    """Print the fully resolved spec, every default filled in, as TOML."""
    from mlpspec.spec import render_spec

    typer.echo(render_spec(_load(spec, set_)), nl=False)


CacheDirOption = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Cache folder [default: $MLPSPEC_CACHE or .mlpspec/cache]."),
]


def _cache(cache_dir: Path | None):
    from mlpspec.cache import Cache, default_cache_dir

    return Cache(cache_dir or default_cache_dir())


@app.command()
@user_errors
def run(
    spec: SpecArg,
    set_: SetOption = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute every stage.")] = False,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Run folder [default: runs/<spec name>].")] = None,
    cache_dir: CacheDirOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Run the spec: load, preprocess, train, evaluate, export (cached stages are reused)."""
    from mlpspec.pipeline import Pipeline
    from mlpspec.progress import LiveProgress, PlainProgress, Progress

    loaded = _load_checked(spec, set_)
    if quiet or as_json:
        progress = Progress()
    elif sys.stderr.isatty():
        progress = LiveProgress()
    else:
        progress = PlainProgress()
    cache = _cache(cache_dir)
    pipeline = Pipeline(loaded, spec.parent, cache, progress, force=force)
    if out is None:
        out = _default_run_folder(spec, loaded, set_)
    try:
        result = pipeline.run(out)
    except OSError as error:
        if error.filename is not None:
            raise  # user_errors names the path
        # A failed write into an open file (a full disk) names no path; the
        # stages write only into the cache (the run folder has its own message).
        _fail(f"error: {cache.root}: cannot write to the cache folder: "
              f"{error.strerror or error}")
    if as_json:
        typer.echo(json.dumps(_summary(result), allow_nan=False))
    elif not quiet:
        typer.echo(_stage_table(result))


def _default_run_folder(spec_file: Path, loaded, overrides: list[str] | None) -> Path:
    """`runs/<name>`; when --set changes the spec but not its name, `runs/<name>-<spec hash>`.

    So a variant never replaces the run folder of the spec as written, two
    different variants never replace each other's, and the same variant run
    again replaces its own. The folder chosen is said on stderr.
    """
    from mlpspec.errors import MlpspecError
    from mlpspec.runs import spec_hash
    from mlpspec.spec import render_spec

    folder = Path("runs") / loaded.name
    if not overrides:
        return folder
    text = render_spec(loaded)
    try:
        plain = _load(spec_file, None)
    except MlpspecError:  # the file alone is invalid: the overrides made it a different spec
        plain = None
    if plain is not None and (render_spec(plain) == text or plain.name != loaded.name):
        return folder  # the spec as written, or a variant the user named with --set name=...
    variant = folder.with_name(f"{loaded.name}-{spec_hash(text)}")
    typer.echo(f"note: --set changes the spec, so the run folder is {variant} "
               f"({folder} stays the spec as written; --out chooses another)", err=True)
    return variant


def _summary(result) -> dict:
    metrics = result.metrics
    summary = {"name": result.spec.name, "run_dir": str(result.run_dir),
               "train_seconds": metrics["train_seconds"], "epochs_run": metrics["epochs_run"],
               "best_epoch": metrics["best_epoch"], "stages": metrics["stages"]}
    for split in ("test", "validation"):
        if split in metrics:
            summary[split] = {k: metrics[split][k] for k in _HEADLINE_KEYS[result.spec.task]}
    return summary


#: The figures of a split `run --json` and `evaluate --json` print, per task.
_HEADLINE_KEYS = {"classification": ("accuracy", "loss", "samples"),
                  "regression": ("rmse", "mae", "r2", "loss", "samples")}


def _headline(split: str, part: dict) -> str:
    """One split's figures as a line: accuracy, or for regression RMSE, MAE and R²
    (means over the targets, in their own units)."""
    if "accuracy" in part:
        return (f"{split} accuracy {part['accuracy']:.2%} ({part['samples']} samples), "
                f"loss {part['loss']:.4f}")
    loss = f", loss {part['loss']:.4f}" if "loss" in part else ""
    return (f"{split} RMSE {part['rmse']:.4g}, MAE {part['mae']:.4g}, R² {part['r2']:.4f} "
            f"({part['samples']} samples){loss}")


def _seconds(value: float) -> str:
    """A duration as a person reads it: 43.1 s, 0.042 s (not "0.0 s")."""
    return f"{value:.1f} s" if value >= 1 else f"{value:.2g} s"


def _stage_table(result) -> str:
    lines = [f"{'stage':<11}{'status':<12}{'seconds':>8}  key"]
    for record in result.stages:
        lines.append(f"{record.stage:<11}{record.status:<12}{record.seconds:>8.2f}  {record.key[:12]}")
    metrics = result.metrics
    lines.append("")
    for split in ("test", "validation"):
        if split in metrics:
            lines.append(_headline(split, metrics[split]))
    lines.append(f"trained {metrics['epochs_run']} epochs in {_seconds(metrics['train_seconds'])}"
                 f"{' (stopped early)' if metrics['stopped_early'] else ''}; "
                 f"run folder {result.run_dir}")
    return "\n".join(lines)


@app.command("evaluate")
@user_errors
def evaluate_command(
    model_file: Annotated[Path, typer.Argument(metavar="MODEL", help="Model file (.mlpm).")],
    on: Annotated[str, typer.Option("--on", metavar="SPEC|SOURCE", help=(
        "A built-in dataset (its full test set) or a spec (its evaluation split)."))],
    set_: SetOption = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder for metrics.json and pictures [default: runs/<model>-on-<data>].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Evaluate a model file on a dataset: metrics.json, confusion.png, errors.png.

    The model takes the dataset's raw samples and applies its own stored
    preprocessing; samples it was not trained on, or a different number of
    classes, end in an error.
    """
    from mlpspec import infer
    from mlpspec.cli_model import load_model, printable
    from mlpspec.data.prepare import load_raw, split_validation
    import numpy as np

    from mlpspec.evaluate import evaluate_model_file

    if out is not None and out.exists() and not out.is_dir():
        _fail(f"error: --out {out}: exists and is not a folder")
    model = load_model(model_file)
    data_spec, base, spec = _data_target(on, set_, "--on")
    task = spec.task if spec is not None else "classification"
    if task != model.task:
        _fail(f"error: {model_file}: a {model.task} model cannot be scored on {on}, whose task "
              f"is {task}")
    raw = load_raw(data_spec, base, task=task)
    if spec is None:  # a built-in dataset: its whole test set
        images, labels, split, label = raw.x_test, raw.y_test, "test", on
    else:
        _, _, x_val, y_val, x_test, y_test = split_validation(raw, spec.data.validation, spec.seed)
        split, label = spec.evaluate.split, spec.name
        images, labels = (x_val, y_val) if split == "validation" else (x_test, y_test)
    if raw.columns and getattr(model, "columns", None) is not None:
        rows = raw.original_rows(images)
        try:
            images = model.encode(rows)  # numbers errors.png can draw
        except infer.InputError as error:
            _fail(f"error: {model_file}: the {split} rows of {label} do not fit the model: {error}")
        model = _RowScoring(model, rows)
    if tuple(images.shape[1:]) != tuple(model.sample_shape):
        _fail(f"error: {model_file}: the model takes samples of shape {tuple(model.sample_shape)}, "
              f"{raw.name} has {tuple(images.shape[1:])}")
    if task == "regression":
        _evaluate_regression(model, model_file, images, labels, out, label, split, as_json,
                             raw.target_names)
        return
    if model.outputs != raw.classes:
        _fail(f"error: {model_file}: the model has {model.outputs} classes (outputs) and the data "
              f"of {label} has {raw.classes}; a score would compare unrelated labels")
    own, theirs = tuple(model.classes), tuple(raw.class_names)
    if own != theirs and sorted(own) == sorted(theirs):
        # The same classes in another order: the data's labels are mapped by name.
        labels = np.array([own.index(name) for name in theirs], dtype=np.int64)[labels]
    elif own != theirs:
        _fail(f"error: {model_file}: the model's classes ({printable(', '.join(own))}) are not "
              f"the classes of {label} ({printable(', '.join(theirs))}); a score would compare "
              f"unrelated labels")
    folder, result = _score_into(
        out, model_file, label, split,
        lambda folder, title: evaluate_model_file(model, images, labels, own, folder, title))
    metrics = result["test"]
    if as_json:
        typer.echo(json.dumps({k: metrics[k] for k in ("accuracy", "loss", "samples")}))
    else:
        typer.echo(f"{split} accuracy {metrics['accuracy']:.2%} ({metrics['samples']} samples), "
                   f"log loss {metrics['loss']:.4f}; wrote {folder}")


def _score_into(out: Path | None, model_file: Path, label: str, split: str, score):
    """`(folder, score(folder, title))`: the evaluation written into `--out` (or
    runs/<model>-on-<data>); samples that do not fit the model or a folder that
    cannot be written end in a message."""
    from mlpspec import infer

    folder = out or Path("runs") / f"{model_file.stem}-on-{label}"
    if folder.exists() and not folder.is_dir():
        _fail(f"error: {folder}: exists and is not a folder (choose another with --out)")
    try:
        return folder, score(folder, f"{model_file.name} on {label} ({split})")
    except infer.InputError as error:
        _fail(f"error: {model_file}: the {split} samples of {label} do not fit the model: {error}")
    except OSError as error:
        _fail(f"error: {folder}: cannot write the results: {error.strerror or error}")


def _evaluate_regression(model, model_file: Path, samples, targets, out: Path | None, label: str,
                         split: str, as_json: bool, names: tuple[str, ...] = ()) -> None:
    """`evaluate` of a regression model: RMSE, MAE and R² per target, in their own units.

    `targets` `(n, k)` are the data's, named `names` (empty: "0", "1", ...); they
    are matched to the model's outputs by name, so a spec listing the same
    targets in another order is not scored against the wrong column."""
    from mlpspec.cli_model import printable
    from mlpspec.data.prepare import target_names_for
    from mlpspec.evaluate import evaluate_regression_file

    if targets.shape[1] != model.outputs:
        _fail(f"error: {model_file}: the model predicts {model.outputs} targets and the data of "
              f"{label} has {targets.shape[1]}")
    names = tuple(names) or target_names_for(targets.shape[1])
    own = tuple(model.target_names)
    if names != own and sorted(names) == sorted(own):
        targets = targets[:, [names.index(name) for name in own]]
    elif names != own:
        typer.echo(f"warning: {model_file}: the model's target names ({printable(', '.join(own))}) "
                   f"differ from the data's ({printable(', '.join(names))}); scoring by position",
                   err=True)
    folder, result = _score_into(
        out, model_file, label, split,
        lambda folder, title: evaluate_regression_file(model, samples, targets, folder, title))
    metrics = result["test"]
    if as_json:
        typer.echo(json.dumps({k: metrics[k] for k in ("rmse", "mae", "r2", "samples", "per_target")}))
    else:
        typer.echo(f"{_headline(split, metrics)}; wrote {folder}")


cache_app = typer.Typer(help="Inspect and clean the stage cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
@user_errors
def cache_ls(cache_dir: CacheDirOption = None) -> None:
    """List cache entries: stage, key, spec, size and age; and leftovers of killed runs."""
    import time

    cache = _cache(cache_dir)
    entries = list(cache.entries())
    stale, stale_bytes = cache.stale_size()
    if stale:
        typer.echo(f"{stale} stale temporaries ({_size(stale_bytes)}) left by killed runs; "
                   f"`mlpspec cache clear` removes them")
    if not entries:
        typer.echo(f"{cache.root}: empty")
        return
    now = time.time()
    typer.echo(f"{'stage':<11}{'key':<14}{'spec':<20}{'size':>10}  age")
    for entry in entries:
        typer.echo(f"{entry.stage:<11}{entry.key[:12]:<14}"
                   f"{str(entry.manifest.get('spec_name', '?'))[:19]:<20}"
                   f"{_size(entry.size):>10}  {_age(now - entry.created)}")
    total = sum(e.size for e in entries)
    typer.echo(f"{len(entries)} entries, {_size(total)} in {cache.root}")


@cache_app.command("clear")
@user_errors
def cache_clear(
    older_than: Annotated[Optional[float], typer.Option(
        "--older-than", metavar="DAYS", min=0, help="Only entries older than this many days.")] = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Remove cache entries (all of them, or those older than --older-than DAYS).

    Temporaries left by killed runs are removed too; those of running ones are kept.
    """
    cache = _cache(cache_dir)
    count, freed = cache.clear(older_than)
    stale, stale_bytes = cache.tidy()
    typer.echo(f"removed {count} entries, {_size(freed)} from {cache.root}")
    if stale:
        typer.echo(f"removed {stale} stale temporaries, {_size(stale_bytes)}")


@cache_app.command("explain")
@user_errors
def cache_explain(spec: SpecArg, set_: SetOption = None, cache_dir: CacheDirOption = None) -> None:
    """For every stage of SPEC: cache hit or miss and, on a miss, what changed."""
    from mlpspec.explain import explain

    for item in explain(_load(spec, set_), spec.parent, _cache(cache_dir)):
        line = f"{item.stage:<11}{'hit' if item.hit else 'miss':<5} {item.key[:12]}"
        if item.compared_with is not None:
            line += (f"  (vs {item.compared_with.key[:12]} of spec "
                     f"{item.compared_with.manifest.get('spec_name', '?')!r})")
        typer.echo(line)
        for reason in item.reasons:
            typer.echo(f"             {reason}")


def _size(count: float) -> str:
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KB", "MB", "GB"):
        count /= 1024
        if count < 1024 or unit == "GB":
            return f"{count:.1f} {unit}"


def _age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} s"


@data_app.command("fetch")
@user_errors
def data_fetch(
    name: Annotated[str, typer.Argument(help="Built-in dataset: mnist or fashion-mnist.")],
) -> None:
    """Download a built-in dataset into the data home and verify every file."""
    from mlpspec.data.download import fetch_dataset

    files = fetch_dataset(name, log=lambda m: typer.echo(m, err=True))
    for role, path in files.items():
        typer.echo(f"{role:13} {path}")


@data_app.command("info")
@user_errors
def data_info(
    target: Annotated[str, typer.Argument(help="Built-in dataset name, or a spec file.")],
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Sample counts, shapes, class balance, per-feature ranges (min, max, mean, missing)
    and verified checksums of a dataset."""
    from mlpspec.data.prepare import load_raw

    data_spec, base, spec = _data_target(target, set_, "TARGET")
    raw = load_raw(data_spec, base, log=lambda m: typer.echo(m, err=True),
                   task=spec.task if spec is not None else "classification")
    info = raw.describe()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(_format_info(info))


def _data_target(target: str, overrides: list[str] | None, what: str):
    """`(data spec, base folder, spec or None)` for a built-in dataset name or a spec file."""
    from mlpspec.data.sources import BUILTIN_DATASETS
    from mlpspec.spec import model

    if target in BUILTIN_DATASETS:
        if overrides:
            _fail(f"error: --set applies to a spec; {what} {target!r} is a built-in dataset")
        return model.DataSpec(source=model.SOURCES[target]()), Path.cwd(), None
    path = Path(target)
    if not path.is_file():
        _fail(f"error: {what} {target!r} is neither a built-in dataset "
              f"({', '.join(BUILTIN_DATASETS)}) nor a spec file")
    if _is_data_file(path):
        source = {".csv": "csv", ".npz": "npz"}.get(path.suffix.lower(), "idx")
        _fail(f"error: {what} {target!r} is a data file; {what} takes a built-in dataset "
              f"({', '.join(BUILTIN_DATASETS)}) or a spec file (TOML) whose [data] table names "
              f"the files, e.g. source = \"{source}\" with its train and test files and "
              f"classes (see docs/spec.md, data.source)")
    spec = _load(path, overrides)
    return spec.data, path.parent, spec


DATA_SUFFIXES = (".csv", ".npz", ".npy", ".gz", ".idx", ".idx1-ubyte", ".idx3-ubyte")


def _is_data_file(path: Path) -> bool:
    """Whether `path` looks like a data file (by its name, or an IDX or zip header), not a spec."""
    name = path.name.lower()
    if name.endswith(DATA_SUFFIXES) or "-ubyte" in name:
        return True
    try:
        with open(path, "rb") as stream:
            head = stream.read(4)
    except OSError:
        return False
    return head.startswith((b"PK\x03\x04", b"\x93NUM", b"\x1f\x8b")) or head[:2] == b"\0\0"


class _RowScoring:
    """A tabular model that scores the raw table rows it was made with.

    `evaluate_model_file` predicts and draws the same array; text cells cannot be
    drawn, so it gets the encoded rows to draw while predictions come from the
    raw rows, through the model's own encoding (as a user's rows would).
    """

    def __init__(self, model, rows):
        self._model, self._rows = model, rows

    def _raw(self, X):
        if len(X) != len(self._rows):
            raise ValueError("scored rows and drawn rows differ")  # a bug, not user input
        return self._rows

    def predict_proba(self, X):
        return self._model.predict_proba(self._raw(X))

    def predict(self, X):
        return self._model.predict(self._raw(X))

    def logits(self, X):
        return self._model.logits(self._raw(X))

    def __getattr__(self, name: str):  # metadata: classes, outputs, sample_shape, ...
        return getattr(self._model, name)


def _format_info(info: dict) -> str:
    if info.get("task") == "regression":
        lines = [f"dataset   {info['name']}  (regression)"]
    else:
        lines = [f"dataset   {info['name']}  ({info['classes']} classes)"]
    for split in ("train", "test"):
        part = info[split]
        lines.append(f"{split:9} {part['samples']} samples, shape {tuple(part['shape'])}, "
                     f"{part['dtype']}")
        if "class_counts" in part:
            names = info["class_names"]
            balance = " ".join(f"{names[c] if c < len(names) else c}:{n}"
                               for c, n in enumerate(part["class_counts"]))
            lines.append(f"          classes {balance}")
        for target in part.get("targets", ()):
            lines.append(f"          target {target['name']}: min {target['min']:.6g} max "
                         f"{target['max']:.6g} mean {target['mean']:.6g}")
        lines.extend(_format_features(part["features"]))
    lines.append("checksums (sha256 of the payload, verified)")
    for name, digest in info["checksums"].items():
        lines.append(f"  {digest}  {name}")
    return "\n".join(lines)


def _format_features(features: list[dict], limit: int = 30) -> list[str]:
    """One line per feature (min, max, mean, missing); a summary over all beyond `limit`."""
    if not features:
        return []
    numeric = [f for f in features if f["min"] is not None]
    missing = sum(f["missing"] for f in features)
    if len(features) > limit:
        low = min((f["min"] for f in numeric), default=float("nan"))
        high = max((f["max"] for f in numeric), default=float("nan"))
        return [f"          {len(features)} features: values {low:.6g} to {high:.6g}, "
                f"{missing} missing (--json lists each feature)"]
    width = max(len(f["name"]) for f in features)
    lines = [f"          {'feature':{width}}  {'min':>10} {'max':>10} {'mean':>10} missing"]
    for f in features:
        if f["min"] is None:
            values = (f"{f.get('categories', 0)} categories" if f["kind"] == "categorical"
                      else "no values")
            lines.append(f"          {f['name']:{width}}  {values:>32} {f['missing']:>7}")
        else:
            lines.append(f"          {f['name']:{width}}  {f['min']:>10.4g} {f['max']:>10.4g} "
                         f"{f['mean']:>10.4g} {f['missing']:>7}")
    return lines


from mlpspec import cli_sweep  # noqa: E402 (the sweep and runs commands register on `app`)

cli_sweep.register(app)
cli_model.register(app)
