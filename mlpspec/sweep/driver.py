"""The sweep driver: skip what is cached, dispatch the rest, store and report what returns.

    outcome = run_sweep(plan, engine, cache, out_dir, say=print)

A trial whose train, evaluate and export entries are all in the driver's
cache is "cached": not sent anywhere, its run folder written from the cache.
With a local engine (the workers share the driver's cache) the load and
preprocess entries the remaining trials need are computed first, once each,
in the driver; on a cluster each worker computes them once in its own cache.

Ctrl-C keeps every trial that finished (it is in the cache and in the results
files, written after every trial) and ends with `RunInterrupted`; the same
command then resumes, and finished trials come back as cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from mlpspec.errors import RunInterrupted
from mlpspec.pipeline import RUN_NEEDS, Pipeline
from mlpspec.progress import Progress
from mlpspec.spec import render_spec
from mlpspec.sweep import results as results_mod
from mlpspec.sweep.plan import SweepPlan, Trial
from mlpspec.sweep.trial import data_files, store_artifacts


@attrs.frozen
class SweepOutcome:
    rows: list[dict[str, Any]]
    standings: list[results_mod.Standing]
    folder: Path
    counts: dict[str, int]
    seconds: float


def is_cached(cache, trial: Trial) -> bool:
    return all(cache.peek(stage, trial.keys[stage]) is not None for stage in RUN_NEEDS)


def run_sweep(plan: SweepPlan, engine, cache, out_dir: Path,
              say: Callable[[str], None] = lambda line: None) -> SweepOutcome:
    import threadpoolctl

    started = time.perf_counter()
    cache.ensure_usable()
    cache.tidy()
    out_dir = Path(out_dir)
    definition = plan.definition
    counts = {"done": 0, "cached": 0, "ran": 0, "failed": 0}
    rows: dict[int, dict[str, Any]] = {}
    keys = list(definition.swept_keys)
    sweep_info = {"name": definition.name, "spec": str(definition.spec_path),
                  "rank_by": f"validation {definition.rank_by}", "swept": keys,
                  "seeds": sorted({t.seed for t in plan.trials}), "trials": len(plan.trials),
                  "engine": engine.description, "threads_per_trial": plan.threads}
    # Keys and run folders are computed under the BLAS thread count the trials train with.
    with threadpoolctl.threadpool_limits(limits=plan.threads, user_api="blas"):
        cached = [t for t in plan.trials if is_cached(cache, t)]
        todo = [t for t in plan.trials if not is_cached(cache, t)]
        say(f"sweep {definition.name}: {len(plan.trials)} trials, {len(cached)} cached, "
            f"{len(todo)} to train on {engine.description}")

        def record(trial: Trial, status: str, outcome: dict[str, Any] | None = None) -> None:
            rows[trial.index] = _row(plan, trial, status, cache, out_dir, outcome)
            status = rows[trial.index]["status"]
            counts["done"] += 1
            counts["failed" if status == "failed" else "cached" if status == "cached" else "ran"] += 1
            running = min(engine.capacity, len(plan.trials) - counts["done"])
            say(_progress_line(plan, rows, counts, running))

        for trial in cached:
            record(trial, "cached")
        if todo and not engine.remote:
            _shared_stages(plan, todo, cache, say)
        payloads = {t.index: _payload(plan, t, cache, engine.remote) for t in todo}
        by_index = {t.index: t for t in todo}
        try:
            for index, outcome in engine.results(payloads):
                trial = by_index[index]
                if "error" in outcome:
                    record(trial, "failed", outcome)
                else:
                    if outcome.get("artifacts") is not None:
                        store_artifacts(cache, trial.keys, outcome["artifacts"])
                    record(trial, outcome["status"], outcome)
                # Written after every trial (cheap): what finished is on disk if the driver dies.
                _write(out_dir, plan, rows, sweep_info, keys, plots=False)
        except (KeyboardInterrupt, RunInterrupted):
            _write(out_dir, plan, rows, sweep_info, keys, plots=False)
            raise RunInterrupted(
                f"interrupted: {counts['done']} of {len(plan.trials)} trials finished and are kept "
                f"(in the cache and {out_dir}); run the same command again to resume") from None
    if getattr(engine, "retried", None):
        say(f"a local worker process died; retried in a fresh pool: {', '.join(engine.retried)}")
    standings = _write(out_dir, plan, rows, sweep_info, keys)
    return SweepOutcome([rows[i] for i in sorted(rows)], standings, out_dir, counts,
                        time.perf_counter() - started)


def _shared_stages(plan: SweepPlan, todo: list[Trial], cache, say) -> None:
    """Load and preprocess once per distinct key, before the workers need them."""
    seen = set()
    for trial in todo:
        if trial.keys["preprocess"] in seen:
            continue
        seen.add(trial.keys["preprocess"])
        if cache.peek("preprocess", trial.keys["preprocess"]) is None:
            say(f"preparing the data for seed {trial.seed} (shared by the trials that use it)")
            Pipeline(trial.spec, plan.base_dir, cache, Progress()).entry("preprocess")


def _payload(plan: SweepPlan, trial: Trial, cache, remote: bool) -> dict[str, Any]:
    return {"label": trial.label, "spec_text": render_spec(trial.spec),
            "spec_source": f"{plan.definition.spec_path} ({trial.label})",
            "keys": dict(trial.keys), "threads": plan.threads,
            "base_dir": None if remote else str(plan.base_dir.resolve()),
            "files": data_files(trial.spec, plan.base_dir) if remote else None,
            "cache_dir": None if remote else str(cache.root.resolve())}


def _row(plan: SweepPlan, trial: Trial, status: str, cache, out_dir: Path,
         outcome: dict[str, Any] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"trial": trial.label, "variant": trial.variant, "values": dict(trial.values),
                           "seed": trial.seed, "status": status, "cache_key": trial.keys["train"],
                           "worker": (outcome or {}).get("worker"), "error": None,
                           "run_folder": None, "train_seconds": None}
    row.update({column: None for column in results_mod.METRIC_COLUMNS})
    if status == "failed":
        row["error"] = outcome["error"].strip().splitlines()[0] if outcome else "failed"
        return row
    if not is_cached(cache, trial):  # never train in the driver behind the engine's back
        row.update(status="failed", error="the trial finished but its artifacts are not in the cache")
        return row
    folder = out_dir / "runs" / trial.label
    result = Pipeline(trial.spec, plan.base_dir, cache, Progress()).run(folder)
    metrics = result.metrics
    for split in ("validation", "test"):
        for name in ("accuracy", "loss"):
            row[f"{split}_{name}"] = metrics.get(split, {}).get(name)
    row["train_seconds"] = metrics.get("train_seconds")
    row["run_folder"] = str(folder)
    return row


def _progress_line(plan: SweepPlan, rows: dict[int, dict], counts: dict[str, int], running: int) -> str:
    rank_by = plan.definition.rank_by
    line = (f"[{counts['done']}/{len(plan.trials)}] ran {counts['ran']}, cached {counts['cached']}, "
            f"failed {counts['failed']}, running {running}")
    finished = [r for r in rows.values() if r["status"] != "failed"]
    if finished:
        sign = -1 if rank_by == "accuracy" else 1
        best = min(finished, key=lambda r: (sign * r[f"validation_{rank_by}"], r["trial"]))
        value = best[f"validation_{rank_by}"]
        shown = f"{value:.2%}" if rank_by == "accuracy" else f"{value:.4f}"
        line += f"; best trial so far {best['trial']} validation {rank_by} {shown}"
    return line


def _write(out_dir: Path, plan: SweepPlan, rows: dict[int, dict], sweep_info: dict, keys: list[str],
           plots: bool = True):
    ordered = [rows[i] for i in sorted(rows)]
    standings = results_mod.leaderboard(ordered, plan.definition.rank_by)
    results_mod.write_results(out_dir, ordered, standings, sweep=sweep_info, keys=keys,
                              rank_by=plan.definition.rank_by, plots=plots)
    if standings:
        _write_best(out_dir, plan, standings[0])
    return standings


def _write_best(out_dir: Path, plan: SweepPlan, best: results_mod.Standing) -> None:
    """The best variant at its first seed, resolved, with data paths that work from `out_dir`."""
    from mlpspec import atomic
    from mlpspec.spec import load_spec, model

    trial = next(t for t in plan.trials if t.label == best.trials[0])
    spec = trial.spec
    if not isinstance(spec.data.source, model.BuiltinSource):
        moved = results_mod.relative_data_paths(plan.base_dir, out_dir, spec.data.source.files())
        spec = load_spec(plan.definition.spec_path, trial.overrides + tuple(moved))
    header = (f"# The best variant of sweep {plan.definition.name!r} (rank {best.rank} by validation "
              f"{plan.definition.rank_by}), resolved.\n"
              f"# Its trials ran with BLAS pinned to {plan.threads} thread(s), which the train cache key "
              f"covers; to reuse the cached model run it the same way:\n"
              f"#   OMP_NUM_THREADS={plan.threads} OPENBLAS_NUM_THREADS={plan.threads} "
              f"MKL_NUM_THREADS={plan.threads} mlpspec run {out_dir / 'best.toml'}\n")
    atomic.write_text(out_dir / "best.toml", header + render_spec(spec))
