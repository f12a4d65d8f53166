"""The `sweep` and `runs` commands: many variants of a spec, and the run folders they leave."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlpspec.cli_support import user_errors

Repeated = Optional[list[str]]


def sweep(
    target: Annotated[Path, typer.Argument(metavar="SWEEP|SPEC", help=(
        "A sweep file (TOML with `spec = ...`) or a spec file swept by the options below."))],
    set_: Annotated[Repeated, typer.Option("--set", "-s", metavar="KEY=VALUE",
                                           help="Override a spec key in every variant.")] = None,
    grid: Annotated[Repeated, typer.Option("--grid", metavar="KEY=[V1,V2,...]",
                                           help="A grid axis (repeatable).")] = None,
    uniform: Annotated[Repeated, typer.Option("--uniform", metavar="KEY=LO,HI",
                                              help="A random axis, uniform in [LO, HI].")] = None,
    log_uniform: Annotated[Repeated, typer.Option("--log-uniform", metavar="KEY=LO,HI",
                                                  help="A random axis, log-uniform in [LO, HI].")] = None,
    choice: Annotated[Repeated, typer.Option("--choice", metavar="KEY=[V1,V2,...]",
                                             help="A random axis, one of the values.")] = None,
    trials: Annotated[int, typer.Option("--trials", min=0, help="Random draws (with random axes).")] = 0,
    sample_seed: Annotated[Optional[int], typer.Option("--sample-seed", min=0, help=(
        "Seed of the random draws [default: the sweep file's, else 0].")) ] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", metavar="S1,S2,...", help=(
        "Train each variant once per seed (default: the spec's seed).")) ] = None,
    rank_by: Annotated[Optional[str], typer.Option("--rank-by", help=(
        "Validation metric: accuracy or loss [default: the sweep file's, else accuracy; "
        "loss for a regression spec].")) ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Local worker processes.")] = 1,
    threads: Annotated[int, typer.Option("--threads", min=1, help=(
        "BLAS threads per trial (part of the train cache key); jobs x threads should not exceed the cores."))] = 1,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", metavar="tcp://HOST:PORT", help=(
        "Run the trials on this Dask cluster (needs the `cluster` extra).")) ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Sweep folder (default: sweeps/<name>).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help=(
        "Cache folder (default: $MLPSPEC_CACHE or .mlpspec/cache).")) ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the leaderboard as JSON.")] = False,
) -> None:
    """Train every variant of a spec (grid, random draws, seeds) and rank them on validation.

    Every variant is validated before anything trains; variants already in the
    cache are not trained again. Ctrl-C keeps finished trials; the same command resumes.
    """
    import attrs

    from mlpspec.cache import Cache, default_cache_dir
    from mlpspec.errors import MlpspecError
    from mlpspec.sweep import engines, plan as plan_mod
    from mlpspec.sweep.driver import run_sweep
    from mlpspec.sweep.results import format_leaderboard

    if rank_by is not None and rank_by not in plan_mod.RANK_BY:
        raise plan_mod.SweepError([f"--rank-by: expected one of {', '.join(plan_mod.RANK_BY)}, "
                                   f"found {rank_by!r}"])
    if scheduler is not None and jobs != 1:
        raise MlpspecError("--jobs is for local workers; with --scheduler the cluster's workers run the trials")
    grid_axes, random_axes = plan_mod.parse_axes(grid=grid or (), uniform=uniform or (),
                                                 log_uniform=log_uniform or (), choice=choice or ())
    command_line = plan_mod.SweepDefinition(
        spec_path=target, name="", base_overrides=tuple(set_ or ()), grid=grid_axes,
        random=random_axes, trials=trials, sample_seed=sample_seed,
        seeds=plan_mod.parse_seeds(seeds) if seeds else None, rank_by=rank_by)
    if _is_sweep_file(target):
        definition = plan_mod.read_sweep_file(target, command_line)
    else:
        definition = attrs.evolve(command_line, name=target.stem)
    plan = plan_mod.plan_sweep(definition, threads=threads)
    say = (lambda line: None) if quiet or as_json else (lambda line: typer.echo(line, err=True))
    if scheduler is not None:
        engine = engines.DaskCluster(scheduler, threads)
    elif jobs > 1:
        engine = engines.LocalPool(jobs, threads)
    else:
        engine = engines.InProcess(threads)
    folder = out or Path("sweeps") / definition.name
    try:
        outcome = run_sweep(plan, engine, Cache(cache_dir or default_cache_dir()), folder, say)
    finally:
        if scheduler is not None:
            engine.close()
    if as_json:
        typer.echo(json.dumps(json.loads((folder / "results.json").read_text())["leaderboard"]))
        return
    if not quiet:
        typer.echo(format_leaderboard(outcome.standings, plan.definition.rank_by, definition.swept_keys))
        counts = outcome.counts
        typer.echo(f"{counts['done']} trials: {counts['ran']} trained, {counts['cached']} cached, "
                   f"{counts['failed']} failed, in {outcome.seconds:.1f} s; results in {folder}"
                   + (f" (best variant: {folder / 'best.toml'})" if outcome.standings else ""))
    if outcome.counts["failed"]:
        failed = [r for r in outcome.rows if r["status"] == "failed"]
        for row in failed:
            typer.echo(f"failed {row['trial']}: {row['error']}", err=True)
        raise typer.Exit(1)


def _is_sweep_file(path: Path) -> bool:
    """A sweep file names its spec at the top (`spec = "..."`); a spec has `spec_version`."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # load_spec reports what is wrong with it
    return "spec" in table and "spec_version" not in table


runs_app = typer.Typer(help="List and compare run folders.", no_args_is_help=True)


@runs_app.command("ls")
@user_errors
def runs_ls(
    root: Annotated[Path, typer.Argument(help="Folder to search for run folders.")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run folders under ROOT: name, date, validation and test accuracy (RMSE for regression), spec hash."""
    from mlpspec.runs import describe_run, find_runs

    infos = [describe_run(folder) for folder in find_runs(root)]
    if as_json:
        typer.echo(json.dumps(infos))
        return
    if not infos:
        typer.echo(f"{root}: no run folders")
        return
    typer.echo(f"{'folder':<40} {'name':<16} {'date':<17} {'validation':>12} {'test':>12} {'train s':>8}  spec")
    for info in infos:
        typer.echo(f"{info['folder'][:40]:<40} {info['name'][:16]:<16} {info['date']:<17} "
                   f"{_headline(info, 'validation'):>12} {_headline(info, 'test'):>12} "
                   f"{_num(info['train_seconds']):>8}  {info['spec_hash'] or '-'}")


def _headline(info: dict, split: str) -> str:
    """A split's headline figure: accuracy, or "RMSE x" for a regression run."""
    if info.get("task") == "regression":
        rmse = info.get(f"{split}_rmse")
        return "-" if rmse is None else f"RMSE {rmse:.4g}"
    return _pct(info[f"{split}_accuracy"])


@runs_app.command("compare")
@user_errors
def runs_compare(
    a: Annotated[Path, typer.Argument(metavar="A", help="A run folder.")],
    b: Annotated[Path, typer.Argument(metavar="B", help="Another run folder.")],
) -> None:
    """The spec keys that differ between two runs, and their metrics side by side."""
    from mlpspec.runs import REGRESSION_METRICS, describe_run, spec_differences

    left, right = describe_run(a), describe_run(b)
    differences = spec_differences(a, b)
    width = max([len("validation_accuracy")] + [len(k) for k, _, _ in differences])
    typer.echo(f"{'key':<{width}}  {'A':>14}  {'B':>14}")
    if not differences:
        typer.echo("(the resolved specs are the same)")
    for key, x, y in differences:
        typer.echo(f"{key:<{width}}  {_value(x):>14}  {_value(y):>14}")
    typer.echo("")
    per_split = (("accuracy", _pct), ("loss", _num), *((name, _num) for name in REGRESSION_METRICS))
    fields = [(f"{split}_{name}", show) for split in ("validation", "test") for name, show in per_split]
    for field, show in [*fields, ("train_seconds", _num)]:
        if field in left or field in right:  # regression figures only for regression runs
            typer.echo(f"{field:<{width}}  {show(left.get(field)):>14}  {show(right.get(field)):>14}")
    typer.echo(f"{'A':<{width}}  {a}\n{'B':<{width}}  {b}")


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _value(value) -> str:
    return "(absent)" if value is None else str(value)


def register(app: typer.Typer) -> None:
    """Add `sweep` and `runs` to `app`."""
    app.command("sweep")(user_errors(sweep))
    app.add_typer(runs_app, name="runs")
