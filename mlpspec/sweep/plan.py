"""A sweep definition expanded into trials: resolved specs with their stage keys.

A sweep file (TOML) names the spec and the axes:

    spec = "mnist.toml"          # relative to the sweep file
    name = "lr-width"            # default: the sweep file's stem
    seeds = [0, 1]               # each variant once per seed; default: the spec's seed
    rank_by = "accuracy"         # validation accuracy (higher is better) or "loss"
    set = ["train.epochs=2"]     # overrides applied to every variant

    [grid]                       # every combination
    "train.optimizer.learning_rate" = [0.05, 0.1, 0.2]
    "network.layers[0].units" = [64, 128]

    [random]                     # `trials` draws from `seed`, crossed with the grid
    trials = 8
    seed = 0
    "train.optimizer.learning_rate" = { log_uniform = [0.001, 0.3] }
    "network.layers[2].rate" = { uniform = [0.0, 0.5] }
    "train.optimizer.type" = { choice = ["adam.v1", "momentum.v1"] }

The same axes can be given on the command line (`mlpspec sweep SPEC --grid
KEY=[...] --log-uniform KEY=LO,HI --trials N --seeds 0,1`). Each trial is
the spec with its overrides (`KEY=VALUE`, exactly as `--set` takes them)
and `seed=N`, loaded through `load_spec`, so a variant is validated like any
spec; `plan_sweep` collects the problems of every variant and raises one
`SweepError` listing them all, before anything runs.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mlpspec import rng
from mlpspec.errors import MlpspecError, SpecError
from mlpspec.spec import load_spec, model
from mlpspec.spec.overrides import parse_override, parse_value
from mlpspec.spec.toml_writer import value_text as toml_value

RANK_BY = {"accuracy": "max", "loss": "min"}  # validation metric -> better direction
DISTRIBUTIONS = ("uniform", "log_uniform", "choice")
SWEEP_KEYS = ("spec", "name", "seeds", "rank_by", "set", "grid", "random")


class SweepError(MlpspecError):
    """The sweep definition or some of its variants are invalid; lists every problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(f"the sweep has {count} problem{'s' if count != 1 else ''} "
                         f"(nothing was trained):\n" + "\n".join(f"  {p}" for p in self.problems))


@attrs.frozen
class Distribution:
    """A random axis: `uniform` / `log_uniform` over [low, high], or `choice` among values."""

    kind: str
    values: tuple[Any, ...]

    def draw(self, generator) -> Any:
        if self.kind == "choice":
            return self.values[int(generator.integers(len(self.values)))]
        low, high = self.values
        if self.kind == "uniform":
            return float(generator.uniform(low, high))
        return float(math.exp(generator.uniform(math.log(low), math.log(high))))


@attrs.frozen
class SweepDefinition:
    """What to sweep: the spec, base overrides, axes, seeds, and the ranking metric."""

    spec_path: Path
    name: str
    base_overrides: tuple[str, ...] = ()
    grid: Mapping[str, tuple[Any, ...]] = attrs.field(factory=dict)
    random: Mapping[str, Distribution] = attrs.field(factory=dict)
    trials: int = 0
    sample_seed: int | None = None  # None: not given (0)
    seeds: tuple[int, ...] | None = None  # None: the spec's own seed
    rank_by: str | None = None  # None: not given (accuracy, or loss for a regression spec)
    source: str = "<command line>"  # the sweep file, for messages

    @property
    def swept_keys(self) -> tuple[str, ...]:
        return tuple(self.grid) + tuple(k for k in self.random if k not in self.grid)


@attrs.frozen
class Trial:
    """One variant at one seed: its overrides, resolved spec and stage keys."""

    index: int          # position in the sweep
    variant: int        # trials of the same variant differ only by seed
    seed: int
    values: Mapping[str, Any]   # swept key -> value
    overrides: tuple[str, ...]  # everything applied to the spec file, `seed=` last
    spec: model.Spec
    keys: Mapping[str, str]

    @property
    def label(self) -> str:
        """A stable, readable name: the run folder's."""
        return f"{self.variant:03d}-seed{self.seed}"


@attrs.frozen
class SweepPlan:
    definition: SweepDefinition
    trials: tuple[Trial, ...]
    base_dir: Path
    threads: int


# ------------------------------------------------------------------ reading


def read_sweep_file(path: Path, extra: SweepDefinition | None = None) -> SweepDefinition:
    """A `SweepDefinition` from a sweep file; problems raise one `SweepError`."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise SweepError([f"{source}: cannot read the file: {error.strerror or error}"]) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SweepError([f"{source}: invalid TOML: {error}"]) from None
    problems: list[str] = []
    for key in raw:
        if key not in SWEEP_KEYS:
            problems.append(f"{source}: {key}: unknown key; expected one of {', '.join(SWEEP_KEYS)}")
    spec = raw.get("spec")
    if not isinstance(spec, str):
        problems.append(f"{source}: spec: expected the spec file's path (a string), "
                        f"found {_kind(spec)}")
        spec = ""
    name = raw.get("name", Path(path).stem)
    if not isinstance(name, str) or not name:
        problems.append(f"{source}: name: expected a non-empty string, found {_kind(name)}")
    base = raw.get("set", [])
    if not isinstance(base, list) or not all(isinstance(s, str) for s in base):
        problems.append(f"{source}: set: expected an array of \"KEY=VALUE\" strings, found {_kind(base)}")
        base = []
    grid = _read_grid(raw.get("grid", {}), f"{source}: grid", problems)
    random_table = raw.get("random", {})
    trials, sample_seed, random = 0, None, {}
    if not isinstance(random_table, dict):
        problems.append(f"{source}: random: expected a table, found {_kind(random_table)}")
    elif random_table:
        trials = random_table.get("trials")
        if not isinstance(trials, int) or isinstance(trials, bool) or not 1 <= trials <= 100_000:
            problems.append(f"{source}: random.trials: expected an integer in [1, 100000], "
                            f"found {_kind(trials)}")
            trials = 0
        sample_seed = random_table.get("seed", 0)
        if not isinstance(sample_seed, int) or isinstance(sample_seed, bool) or sample_seed < 0:
            problems.append(f"{source}: random.seed: expected an integer >= 0, found {_kind(sample_seed)}")
            sample_seed = 0
        for key, value in random_table.items():
            if key not in ("trials", "seed"):
                dist = _read_distribution(value, f"{source}: random.\"{key}\"", problems)
                if dist is not None:
                    random[key] = dist
    seeds = _read_seeds(raw.get("seeds"), f"{source}: seeds", problems)
    rank_by = raw.get("rank_by")
    if rank_by is not None and rank_by not in RANK_BY:
        problems.append(f"{source}: rank_by: expected one of {', '.join(RANK_BY)}, found {rank_by!r}")
    for key in set(grid) & set(random):
        problems.append(f"{source}: {key}: both a grid axis and a random axis; keep one")
    if problems:
        raise SweepError(problems)
    definition = SweepDefinition(
        spec_path=(Path(path).parent / spec), name=name, base_overrides=tuple(base), grid=grid,
        random=random, trials=trials, sample_seed=sample_seed, seeds=seeds, rank_by=rank_by,
        source=source)
    return merge(definition, extra) if extra is not None else definition


def merge(base: SweepDefinition, extra: SweepDefinition) -> SweepDefinition:
    """`base` (a sweep file) with the command line's additions; the command line wins."""
    grid = {k: v for k, v in base.grid.items() if k not in extra.random} | dict(extra.grid)
    random = {k: v for k, v in base.random.items() if k not in extra.grid} | dict(extra.random)
    return attrs.evolve(
        base, base_overrides=base.base_overrides + extra.base_overrides, grid=grid, random=random,
        trials=extra.trials or base.trials, seeds=extra.seeds or base.seeds,
        # What the command line gives wins, what it leaves out comes from the file.
        sample_seed=extra.sample_seed if extra.sample_seed is not None else base.sample_seed,
        rank_by=extra.rank_by if extra.rank_by is not None else base.rank_by)


def parse_axes(*, grid: Sequence[str] = (), uniform: Sequence[str] = (),
               log_uniform: Sequence[str] = (), choice: Sequence[str] = ()) -> tuple[dict, dict]:
    """Command-line axes (`KEY=[1,2]`, `KEY=LO,HI`) as (grid, random); `SweepError` lists problems."""
    problems: list[str] = []
    grid_axes: dict[str, tuple] = {}
    random_axes: dict[str, Distribution] = {}
    for option, texts in (("--grid", grid), ("--choice", choice)):
        for text in texts:
            key, value = _split(text, option, problems)
            if key is None:
                continue
            if not isinstance(value, list) or not value:
                problems.append(f"{option} {text}: expected KEY=[v1, v2, ...], found {_kind(value)}")
            elif option == "--grid":
                grid_axes[key] = tuple(value)
            else:
                random_axes[key] = Distribution("choice", tuple(value))
    for option, kind, texts in (("--uniform", "uniform", uniform),
                                ("--log-uniform", "log_uniform", log_uniform)):
        for text in texts:
            key, value = _split(text, option, problems, bounds=True)
            if key is None:
                continue
            dist = _read_distribution({kind: value}, f"{option} {text}", problems)
            if dist is not None:
                random_axes[key] = dist
    if problems:
        raise SweepError(problems)
    return grid_axes, random_axes


def parse_seeds(text: str) -> tuple[int, ...]:
    """`--seeds 0,1,2` as a tuple; `SweepError` otherwise."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SweepError([f"--seeds {text}: expected integers separated by commas, e.g. 0,1,2"]) from None
    problems: list[str] = []
    _read_seeds(list(seeds), f"--seeds {text}", problems)
    if problems:
        raise SweepError(problems)
    return seeds


def _split(text: str, option: str, problems: list[str], bounds: bool = False):
    key, sep, value_text = text.partition("=")
    if not sep:
        problems.append(f"{option} {text}: expected KEY=VALUE, found no '='")
        return None, None
    try:
        parse_override(f"{key}=0")
        value = parse_value(f"[{value_text}]" if bounds else value_text)
    except ValueError as error:
        problems.append(f"{option} {text}: {error}")
        return None, None
    return key.strip(), value


def _read_grid(table: Any, where: str, problems: list[str]) -> dict[str, tuple]:
    if not isinstance(table, dict):
        problems.append(f"{where}: expected a table of KEY = [values], found {_kind(table)}")
        return {}
    grid = {}
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            problems.append(f"{where}.\"{key}\": expected a non-empty array of values, found {_kind(values)}")
        else:
            grid[key] = tuple(values)
    return grid


def _read_distribution(value: Any, where: str, problems: list[str]) -> Distribution | None:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        problems.append(f"{where}: expected one of {{ uniform = [low, high] }}, "
                        f"{{ log_uniform = [low, high] }}, {{ choice = [values] }}, found {value!r}")
        return None
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        problems.append(f"{where}: {kind}: expected a non-empty array, found {_kind(args)}")
        return None
    if kind == "choice":
        return Distribution(kind, tuple(args))
    numeric = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    if len(args) != 2 or not numeric or not args[0] < args[1]:
        problems.append(f"{where}: {kind}: expected [low, high] with low < high, found {args!r}")
        return None
    if kind == "log_uniform" and args[0] <= 0:
        problems.append(f"{where}: log_uniform: expected low > 0, found {args[0]!r}")
        return None
    return Distribution(kind, (float(args[0]), float(args[1])))


def _read_seeds(value: Any, where: str, problems: list[str]) -> tuple[int, ...] | None:
    if value is None:
        return None
    ok = (isinstance(value, list) and value and len(set(value)) == len(value)
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value))
    if not ok:
        problems.append(f"{where}: expected a non-empty array of distinct integers >= 0, found {value!r}")
        return None
    return tuple(value)


# ------------------------------------------------------------------ expanding


def variants(definition: SweepDefinition) -> list[dict[str, Any]]:
    """Every variant as {swept key: value}: the grid's product, crossed with the random draws."""
    grid_points = [dict(zip(definition.grid, combo))
                   for combo in itertools.product(*definition.grid.values())]
    if not definition.random:
        return grid_points
    generator = rng.generator(definition.sample_seed, "sweep.random")
    draws = [{key: dist.draw(generator) for key, dist in definition.random.items()}
             for _ in range(definition.trials or 1)]
    return [point | draw for draw in draws for point in grid_points]


def plan_sweep(definition: SweepDefinition, *, threads: int = 1) -> SweepPlan:
    """Resolve and validate every trial; one `SweepError` lists all problems.

    The stage keys are computed with BLAS pinned to `threads`, the count every
    trial runs under, wherever it runs (the train key covers the thread count).
    """
    import threadpoolctl

    from mlpspec.pipeline import stage_keys

    problems: list[str] = []
    if definition.trials and not definition.random:
        problems.append(f"{definition.source}: random.trials is set but no random axis is given")
    if not definition.spec_path.is_file():
        raise SweepError([f"{definition.source}: spec: {definition.spec_path}: no such file"])
    try:
        plain = load_spec(definition.spec_path, definition.base_overrides)
    except SpecError as error:
        raise SweepError([f"base spec: {p}" for p in error.problems]) from None
    if plain.task == "regression" and definition.rank_by == "accuracy":
        problems.append(f"{definition.source}: rank_by: expected 'loss' for a regression spec "
                        f"(its trials have no accuracy), found 'accuracy'")
    # Unset: accuracy, or for regression the validation loss (the one metric both tasks report).
    definition = attrs.evolve(
        definition, sample_seed=definition.sample_seed or 0,
        rank_by=definition.rank_by or ("loss" if plain.task == "regression" else "accuracy"))
    if plain.data.validation.take_from == "none":
        problems.append(f"{definition.spec_path}: data.validation.take_from: a sweep ranks "
                        f"variants on the validation set; expected \"test\" or \"train\", found \"none\"")
    seeds = definition.seeds or (plain.seed,)
    trials: list[Trial] = []
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        for variant, values in enumerate(variants(definition) or [{}]):
            for seed in seeds:
                overrides = definition.base_overrides + tuple(
                    f"{key}={toml_value(value)}" for key, value in values.items()) + (f"seed={seed}",)
                label = f"variant {variant:03d} seed {seed} ({_describe(values) or 'the spec'})"
                try:
                    spec = load_spec(definition.spec_path, overrides)
                except SpecError as error:
                    problems += [f"{label}: {p}" for p in error.problems]
                    continue
                try:
                    keys, _ = stage_keys(spec, definition.spec_path.parent)
                except MlpspecError as error:
                    problems.append(f"{label}: {error}")
                    continue
                trials.append(Trial(len(trials), variant, seed, values, overrides, spec, keys))
    if problems:
        raise SweepError(problems)
    return SweepPlan(definition, tuple(trials), definition.spec_path.parent, threads)


def _describe(values: Mapping[str, Any]) -> str:
    return " ".join(f"{_short(k)}={_show(v)}" for k, v in values.items())


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1] if not key.endswith("]") else key


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:80]
