"""What a sweep leaves behind, and the leaderboard.

    <sweep folder>/results.csv      one row per trial
    <sweep folder>/results.json     {"sweep": ..., "trials": [rows], "leaderboard": [...]}
    <sweep folder>/leaderboard.txt  the table printed at the end
    <sweep folder>/plots/<key>.png  validation metric against each swept key
    <sweep folder>/best.toml        the best variant (first seed), resolved, for `mlpspec run`
    <sweep folder>/runs/<trial>/    each trial's ordinary run folder

Variants are ranked by the mean of the VALIDATION metric over their seeds;
the test metric is shown beside it and never used to choose.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mlpspec import atomic
from mlpspec.files import jsonable
from mlpspec.spec.toml_writer import value_text

METRIC_COLUMNS = ("validation_accuracy", "validation_loss", "test_accuracy", "test_loss")


@attrs.frozen
class Standing:
    """One variant on the leaderboard: mean and std over its seeds' finished trials."""

    rank: int
    variant: int
    values: Mapping[str, Any]
    seeds: tuple[int, ...]
    validation_mean: float
    validation_std: float
    test_mean: float
    test_std: float
    trials: tuple[str, ...]
    validation_loss_mean: float  # breaks ties of accuracy


def leaderboard(rows: Sequence[Mapping[str, Any]], rank_by: str) -> list[Standing]:
    """Variants ranked by their mean validation `rank_by` (accuracy: high first; loss: low first).

    Equal accuracies are ranked by validation loss.
    Ties keep the sweep's order, so the ranking is the same however trials were run.
    """
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("status") != "failed":
            groups.setdefault(row["variant"], []).append(row)
    standings = []
    for variant, members in groups.items():
        members = sorted(members, key=lambda r: r["seed"])
        val = [r[f"validation_{rank_by}"] for r in members]
        test = [r.get(f"test_{rank_by}", math.nan) for r in members]
        standings.append(Standing(0, variant, members[0]["values"], tuple(r["seed"] for r in members),
                                  *_mean_std(val), *_mean_std(test),
                                  tuple(r["trial"] for r in members),
                                  _mean_std([r["validation_loss"] for r in members])[0]))
    sign = -1 if rank_by == "accuracy" else 1
    standings.sort(key=lambda s: (sign * s.validation_mean, s.validation_loss_mean, s.variant))
    return [attrs.evolve(s, rank=i + 1) for i, s in enumerate(standings)]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    # Sample standard deviation: the seeds are a sample of the seeds one could pick.
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_leaderboard(standings: Sequence[Standing], rank_by: str, keys: Sequence[str]) -> str:
    fmt = (lambda v: f"{v:.2%}") if rank_by == "accuracy" else (lambda v: f"{v:.4f}")
    head = ["rank", "variant", *keys, "seeds", f"validation {rank_by}", f"test {rank_by}"]
    body = []
    for s in standings:
        body.append([str(s.rank), f"{s.variant:03d}", *(_show(s.values.get(k)) for k in keys),
                     str(len(s.seeds)), f"{fmt(s.validation_mean)} ± {fmt(s.validation_std)}",
                     f"{fmt(s.test_mean)} ± {fmt(s.test_std)}"])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *body]]
    lines.append(f"ranked by validation {rank_by} (mean ± sample std over seeds); "
                 f"test shown, never used to rank")
    return "\n".join(lines)


def write_results(folder: Path, rows: Sequence[Mapping[str, Any]], standings: Sequence[Standing],
                  *, sweep: Mapping[str, Any], keys: Sequence[str], rank_by: str,
                  plots: bool = True) -> None:
    """results.csv, results.json, leaderboard.txt and (with `plots`) the plots, each replaced whole."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["trial", "variant", *keys, "seed", "status", *METRIC_COLUMNS, "train_seconds",
               "cache_key", "run_folder", "worker", "error"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    flat = [_flat(row) for row in rows]
    for row in flat:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    atomic.write_text(folder / "results.csv", text.getvalue())
    document = {"sweep": dict(sweep), "trials": flat,
                "leaderboard": [{**attrs.asdict(s), "values": dict(s.values)} for s in standings]}
    atomic.write_text(folder / "results.json", json.dumps(jsonable(document), indent=1))
    atomic.write_text(folder / "leaderboard.txt", format_leaderboard(standings, rank_by, keys) + "\n")
    if plots:
        _plots(folder / "plots", rows, keys, rank_by)


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in row.items() if k != "values"}
    flat.update(row["values"])
    return flat


def _plots(folder: Path, rows: Sequence[Mapping[str, Any]], keys: Sequence[str], rank_by: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("status") != "failed"]
    if not done or not keys:
        return
    folder.mkdir(exist_ok=True)
    for key in keys:
        xs = [r["values"][key] for r in done]
        ys = [r[f"validation_{rank_by}"] for r in done]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        figure, axes = plt.subplots(figsize=(5, 3.5))
        if numeric:
            axes.scatter(xs, ys, alpha=0.7)
            if min(xs) > 0 and max(xs) / min(xs) >= 20:
                axes.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            axes.scatter([labels.index(str(x)) for x in xs], ys, alpha=0.7)
            axes.set_xticks(range(len(labels)), labels)
        axes.set_xlabel(key)
        axes.set_ylabel(f"validation {rank_by}")
        axes.set_title(f"validation {rank_by} against {key}", fontsize=9)
        figure.tight_layout()
        figure.savefig(folder / f"{_filename(key)}.png", dpi=80)
        plt.close(figure)


def _filename(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def relative_data_paths(spec_dir: Path, out_dir: Path, files: Mapping[str, str]) -> list[str]:
    """Overrides that point the data files of a spec moved to `out_dir` back at the same files."""
    overrides = []
    for key, name in files.items():
        if not Path(name).is_absolute():
            moved = os.path.relpath((spec_dir / name).resolve(), out_dir.resolve())
            overrides.append(f"data.{key}={value_text(Path(moved).as_posix())}")
    return overrides
