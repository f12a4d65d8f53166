"""The `mlpspec` command line.

Commands are thin: they parse arguments, call the library and print. Every
user error is an `MlpspecError`, printed as a message with exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from mlpspec.errors import MlpspecError, SpecError

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


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def user_errors(command: Callable) -> Callable:
    """Turn an `MlpspecError` into its message on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SpecError as error:
            count = len(error.problems)
            header = f"error: the spec has {count} problem{'s' if count != 1 else ''}:"
            _fail("\n".join([header] + [f"  {p}" for p in error.problems]))
        except MlpspecError as error:
            _fail(f"error: {error}")
        except KeyboardInterrupt:
            _fail("interrupted")

    return wrapper


def _load(spec: Path, overrides: list[str] | None):
    from mlpspec.spec import load_spec

    return load_spec(spec, overrides or ())


@app.command()
@user_errors
def validate(spec: SpecArg, set_: SetOption = None) -> None:
    """Check a spec; exit 0 when valid, 2 with every problem otherwise."""
    _load(spec, set_)
    typer.echo(f"{spec}: valid")


@app.command()
@user_errors
def render(spec: SpecArg, set_: SetOption = None) -> None:
    """Print the fully resolved spec, every default filled in, as TOML."""
    from mlpspec.spec import render_spec

    typer.echo(render_spec(_load(spec, set_)), nl=False)


@app.command()
@user_errors
def run(
    spec: SpecArg,
    set_: SetOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the result.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Load the data, train the network and evaluate it on the test split."""
    from mlpspec.data.prepare import load_raw, prepare
    from mlpspec.evaluate import evaluate
    from mlpspec.train import build_loss, fit

    loaded = _load(spec, set_)
    say = (lambda message: None) if quiet or as_json else (lambda m: typer.echo(m, err=True))
    raw = load_raw(loaded.data, spec.parent, log=say)
    data = prepare(raw, loaded.data, loaded.seed, loaded.train.precision)
    say(f"{loaded.name}: {len(data.x_train)} train, {len(data.x_val)} validation, "
        f"{len(data.x_test)} test samples")

    def on_epoch(record) -> None:
        validation = (f"  val loss {record.val_loss:.4f} acc {record.val_accuracy:.2%}"
                      if record.val_loss == record.val_loss else "")
        say(f"epoch {record.epoch:3d}/{loaded.train.epochs}  loss {record.train_loss:.4f} "
            f"acc {record.train_accuracy:.2%}{validation}  lr {record.learning_rate:.4g}  "
            f"{record.seconds:.2f}s")

    result = fit(loaded, data, on_epoch=on_epoch)
    split = loaded.evaluate.split
    X, y = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    metrics = evaluate(result.network, build_loss(loaded), X, y, data.classes,
                       loaded.evaluate.batch_size)
    summary = {
        "name": loaded.name,
        split: {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "samples": metrics["samples"]},
        "train_seconds": result.seconds,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{split} accuracy {metrics['accuracy']:.2%} ({metrics['samples']} samples), "
                   f"loss {metrics['loss']:.4f}; trained {len(result.history)} epochs in "
                   f"{result.seconds:.1f} s")


@data_app.command("fetch")
@user_errors
def data_fetch(
    name: Annotated[str, typer.Argument(help="Built-in dataset: mnist or fashion-mnist.")],
) -> None:
    """Download a built-in dataset into the data home and verify every file."""
    from mlpspec.data.download import fetch_dataset

    files = fetch_dataset(_builtin_name(name), log=lambda m: typer.echo(m, err=True))
    for role, path in files.items():
        typer.echo(f"{role:13} {path}")


@data_app.command("info")
@user_errors
def data_info(
    target: Annotated[str, typer.Argument(help="Built-in dataset name, or a spec file.")],
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Sample counts, shapes, class balance and verified checksums of a dataset."""
    from mlpspec.data.sources import BUILTIN_DATASETS
    from mlpspec.data.prepare import load_raw
    from mlpspec.spec import model

    if target in BUILTIN_DATASETS:
        data_spec = model.DataSpec(source=model.SOURCES[target]())
        base = Path.cwd()
    else:
        path = Path(target)
        if not path.exists():
            _fail(f"error: {target!r} is neither a built-in dataset "
                  f"({', '.join(BUILTIN_DATASETS)}) nor an existing spec file")
        data_spec, base = _load(path, set_).data, path.parent
    raw = load_raw(data_spec, base, log=lambda m: typer.echo(m, err=True))
    info = raw.describe()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(_format_info(info))


def _format_info(info: dict) -> str:
    lines = [f"dataset   {info['name']}  ({info['classes']} classes)"]
    for split in ("train", "test"):
        part = info[split]
        balance = " ".join(f"{c}:{n}" for c, n in enumerate(part["class_counts"]))
        lines.append(f"{split:9} {part['samples']} samples, shape {tuple(part['shape'])}, "
                     f"{part['dtype']}")
        lines.append(f"          classes {balance}")
    lines.append("checksums (sha256 of the payload, verified)")
    for name, digest in info["checksums"].items():
        lines.append(f"  {digest}  {name}")
    return "\n".join(lines)


def _builtin_name(name: str) -> str:
    from mlpspec.data.sources import BUILTIN_DATASETS

    if name not in BUILTIN_DATASETS:
        _fail(f"error: unknown dataset {name!r}; built-in datasets: {', '.join(BUILTIN_DATASETS)}")
    return name


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
