"""The pipeline: load → preprocess → train → evaluate → export, each stage cached.

    result = Pipeline(spec, spec_path, Cache(root), progress).run()

Every stage's cache key hashes what it reads from the resolved spec, the keys
of the stages it consumes, the data checksums and the stage's own version
(`STAGE_VERSIONS`; bump one when its semantics change). All keys are known
before any data is read, so a run works backwards from what it must produce:
a stage whose entry is cached is not computed, and nothing it would have
consumed is loaded. Rerunning an unchanged spec reads a few small files.

Training is the only long stage. Interrupted with Ctrl-C, it saves a
checkpoint of its last finished epoch under `<cache>/checkpoints/<key>/`;
the next run of the same spec resumes from it and ends with the same weights,
bit for bit, as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mlpspec.cache import Cache, Entry, file_sha256, stage_key
from mlpspec.errors import MlpspecError, RunInterrupted
from mlpspec.progress import Progress
from mlpspec.spec import model, render_spec
from mlpspec.spec.schema import unstructure

STAGES = ("load", "preprocess", "train", "evaluate", "export")
STAGE_VERSIONS = {"load": 1, "preprocess": 2, "train": 1, "evaluate": 1, "export": 2}
CONSUMES = {
    "load": (),
    "preprocess": ("load",),
    "train": ("preprocess",),
    "evaluate": ("preprocess", "train"),
    "export": ("preprocess", "train", "evaluate"),
}
# What the run folder needs, besides the stages those need to be computed.
RUN_NEEDS = ("train", "evaluate", "export")


@attrs.frozen
class StageRecord:
    """One row of the stage table."""

    stage: str
    status: str  # "cached", "ran", "resumed" or "not needed"
    seconds: float
    key: str


@attrs.frozen
class RunResult:
    spec: model.Spec
    stages: tuple[StageRecord, ...]
    metrics: dict[str, Any]
    run_dir: Path | None


def stage_reads(spec: model.Spec) -> dict[str, dict[str, Any]]:
    """The part of the resolved spec each stage reads, as a table keyed like the spec."""
    table = unstructure(spec)
    data = table["data"]
    source = {k: v for k, v in data.items()
              if k not in ("preprocess", "validation", "augment", "mirrors")}
    if not isinstance(spec.data.source, model.BuiltinSource):
        # Local files count by content (their checksums), not by where they lie.
        source = {k: v for k, v in source.items() if k not in spec.data.source.files()}
    return {
        "load": {"data": source},
        "preprocess": {"data": {"preprocess": data["preprocess"], "validation": data["validation"]},
                       "seed": spec.seed, "train": {"precision": spec.train.precision}},
        # Augmentation happens inside the training loop, on the prepared data.
        "train": {"network": table["network"], "train": table["train"], "seed": spec.seed,
                  "data": {"augment": data["augment"]}},
        "evaluate": {"evaluate": table["evaluate"]},
        # The model file embeds the resolved spec as provenance.
        "export": {"spec": table},
    }


def data_checksums(spec: model.Spec, base_dir: Path) -> dict[str, str]:
    """Checksums identifying the data: published ones for built-ins, file hashes otherwise."""
    from mlpspec.data.sources import BUILTIN_DATASETS

    source = spec.data.source
    if isinstance(source, model.BuiltinSource):
        files = BUILTIN_DATASETS[model.name_of(source)].files
        return {remote.filename: remote.sha256 for remote in files.values()}
    checksums = {}
    for key, name in source.files().items():
        path = base_dir / name
        try:
            checksums[key] = file_sha256(path)
        except OSError as error:
            raise MlpspecError(f"data.{key}: {path}: cannot read the file: "
                               f"{error.strerror or error}") from None
    return checksums


def stage_keys(spec: model.Spec, base_dir: Path) -> tuple[dict[str, str], dict[str, dict]]:
    """Every stage's cache key, and what went into it (stored for `cache explain`)."""
    reads = stage_reads(spec)
    checksums = data_checksums(spec, base_dir)
    keys: dict[str, str] = {}
    info: dict[str, dict] = {}
    for stage in STAGES:
        consumes = {dep: keys[dep] for dep in CONSUMES[stage]}
        sums = checksums if stage == "load" else {}
        keys[stage] = stage_key(stage, version=STAGE_VERSIONS[stage], reads=reads[stage],
                                consumes=consumes, checksums=sums)
        info[stage] = {"spec_name": spec.name, "version": STAGE_VERSIONS[stage],
                       "reads": reads[stage], "consumes": consumes, "checksums": sums}
    return keys, info


class Pipeline:
    """One run of a spec against a cache."""

    def __init__(self, spec: model.Spec, base_dir: Path, cache: Cache, progress: Progress,
                 *, force: bool = False):
        self.spec, self.base_dir, self.cache, self.progress = spec, base_dir, cache, progress
        self.force = force
        self.keys, self.info = stage_keys(spec, base_dir)
        self.records: dict[str, StageRecord] = {}
        self._computers = {"load": self._compute_load, "preprocess": self._compute_preprocess,
                           "train": self._compute_train, "evaluate": self._compute_evaluate,
                           "export": self._compute_export}
        self._entries: dict[str, Entry] = {}
        self._values: dict[str, Any] = {}

    # ------------------------------------------------------------ driving

    def run(self, out_dir: Path | None) -> RunResult:
        # Fail before any work, not after an hour of training.
        self.cache.ensure_usable()
        if out_dir is not None:
            _check_replaceable(Path(out_dir).resolve())
        for stage in RUN_NEEDS:
            self.entry(stage)
        for stage in STAGES:
            if stage not in self.records:
                cached = self.cache.peek(stage, self.keys[stage]) is not None
                self.records[stage] = StageRecord(stage, "cached" if cached else "not needed",
                                                  0.0, self.keys[stage])
        stages = tuple(self.records[s] for s in STAGES)
        metrics = self._run_metrics(stages)
        run_dir = self._write_run_folder(out_dir, metrics) if out_dir is not None else None
        return RunResult(self.spec, stages, metrics, run_dir)

    def entry(self, stage: str) -> Entry:
        """The stage's entry: from the cache, or computed (with what it consumes) and stored."""
        if stage in self._entries:
            return self._entries[stage]
        key = self.keys[stage]
        started = time.perf_counter()
        entry = None if self.force else self.cache.get(stage, key)
        status = "cached"
        if entry is None:
            for dependency in CONSUMES[stage]:
                self.entry(dependency)
            started = time.perf_counter()
            self.progress.stage_started(stage)
            status, write = self._computers[stage]()
            if self.force:
                self.cache.discard(stage, key)
            entry = self.cache.put(stage, key, write, self.info[stage])
        seconds = time.perf_counter() - started
        self.records[stage] = StageRecord(stage, status, seconds, key)
        self.progress.stage_finished(stage, status, seconds)
        self._entries[stage] = entry
        return entry

    # ------------------------------------------------------------ stages
    # Each `_compute_<stage>` does the work and returns (status, write), where
    # write(folder) stores the artifacts into the cache entry's folder.

    def _compute_load(self):
        from mlpspec.data.prepare import load_raw

        raw = load_raw(self.spec.data, self.base_dir, log=self.progress.message)

        def write(folder: Path):
            _save_arrays(folder, {"x_train": raw.x_train, "y_train": raw.y_train,
                                  "x_test": raw.x_test, "y_test": raw.y_test})
            _write_json(folder / "meta.json", {"name": raw.name, "classes": raw.classes,
                                               "class_names": list(raw.class_names),
                                               "checksums": dict(raw.checksums)})

        return "ran", write

    def _compute_preprocess(self):
        from mlpspec.data.load import RawDataset
        from mlpspec.data.prepare import prepare

        entry = self._entries["load"]
        meta = _read_json(entry.file("meta.json"))
        arrays = _load_arrays(entry.path, ("x_train", "y_train", "x_test", "y_test"))
        raw = RawDataset(meta["name"], arrays["x_train"], arrays["y_train"], arrays["x_test"],
                         arrays["y_test"], meta["classes"], tuple(meta["class_names"]),
                         meta["checksums"])
        data = prepare(raw, self.spec.data, self.spec.seed, self.spec.train.precision)
        _check_features(self.spec, data)

        def write(folder: Path):
            _save_arrays(folder, {name: getattr(data, name) for name in _PREPARED_ARRAYS})
            _save_arrays(folder, {"scaling_offset": data.scaling.offset,
                                  "scaling_scale": data.scaling.scale})
            _write_json(folder / "meta.json", {
                "name": meta["name"], "classes": data.classes, "class_names": list(data.class_names),
                "sample_shape": list(data.sample_shape), "scaling": data.scaling.kind,
                "one_hot": self.spec.data.preprocess.one_hot, "checksums": meta["checksums"],
                "raw_input": data.raw_input.to_meta()})

        self._values["prepared"] = data
        return "ran", write

    def _compute_train(self):
        from mlpspec.train import Interrupted, fit

        data = self.prepared()
        checkpoints = Checkpoints(self.cache.root / "checkpoints" / self.keys["train"])
        if self.force:
            checkpoints.clear()
        resume = checkpoints.load(self.spec)
        batches = math.ceil(len(data.x_train) / min(self.spec.train.batch_size, len(data.x_train)))
        self.progress.training_started(self.spec.train.epochs, resume.epoch + 1 if resume else 1,
                                       batches, len(data.x_train))
        try:
            result = fit(self.spec, data, on_epoch=self.progress.epoch, resume=resume,
                         on_step=self.progress.step)
        except Interrupted as interrupted:
            if interrupted.checkpoint is None:
                raise RunInterrupted("interrupted before the first epoch finished; "
                                     "no checkpoint was kept") from None
            try:
                checkpoints.save(interrupted.checkpoint)
            except OSError as error:
                raise RunInterrupted(f"interrupted; could not keep a checkpoint in "
                                     f"{checkpoints.folder}: {error.strerror or error}") from None
            raise RunInterrupted(
                f"interrupted; kept a checkpoint after epoch {interrupted.checkpoint.epoch} of "
                f"{self.spec.train.epochs} — run the same command again to resume") from None
        finally:
            self.progress.training_finished()
        self._values["network"] = result.network
        history = [attrs.asdict(record) for record in result.history]
        self._values["history"] = history

        def write(folder: Path):
            _save_arrays(folder / "weights", result.network.state_dict())
            _write_json(folder / "history.json", history)
            _write_json(folder / "result.json", {
                "train_seconds": result.seconds, "best_epoch": result.best_epoch,
                "stopped_early": result.stopped_early, "epochs_run": len(result.history),
                "resumed_from_epoch": resume.epoch if resume else 0})

        return ("resumed" if resume else "ran"), _then(write, checkpoints.clear)

    def _compute_evaluate(self):
        from mlpspec.evaluate import evaluate_run

        data = self.prepared()
        network = self.network()
        history = self.history()

        def write(folder: Path):
            metrics = evaluate_run(self.spec, network, data, history, folder)
            _write_json(folder / "metrics.json", metrics)

        return "ran", write

    def _compute_export(self):
        from mlpspec.data.prepare import RawInput
        from mlpspec.export import model_to_bytes

        meta = _read_json(self._entries["preprocess"].file("meta.json"))
        metrics = _read_json(self._entries["evaluate"].file("metrics.json"))
        blob = model_to_bytes(self.network(), self.spec, scaling=self.scaling(),
                              raw_input=RawInput.from_meta(meta["raw_input"]),
                              sample_shape=tuple(meta["sample_shape"]),
                              class_names=tuple(meta["class_names"]),
                              metrics=_headline(metrics), checksums=meta["checksums"],
                              cache_key=self.keys["train"])

        def write(folder: Path):
            (folder / "model.mlpm").write_bytes(blob)

        return "ran", write

    # ------------------------------------------------------------ artifacts

    def prepared(self):
        """The preprocessed data (from memory or the preprocess entry)."""
        if "prepared" not in self._values:
            from mlpspec.data.prepare import Prepared, one_hot

            entry = self._entries["preprocess"]
            meta = _read_json(entry.file("meta.json"))
            arrays = _load_arrays(entry.path, _PREPARED_ARRAYS)
            targets = (one_hot(arrays["y_train"], meta["classes"], arrays["x_train"].dtype)
                       if meta["one_hot"] else arrays["y_train"])
            self._values["prepared"] = Prepared(
                arrays["x_train"], arrays["y_train"], targets, arrays["x_val"], arrays["y_val"],
                arrays["x_test"], arrays["y_test"], meta["classes"], tuple(meta["class_names"]),
                tuple(meta["sample_shape"]), _read_scaling(entry, meta))
        return self._values["prepared"]

    def scaling(self):
        """The fitted input scaling, without loading the preprocessed arrays."""
        if "prepared" in self._values:
            return self._values["prepared"].scaling
        entry = self._entries["preprocess"]
        return _read_scaling(entry, _read_json(entry.file("meta.json")))

    def network(self):
        if "network" not in self._values:
            from mlpspec.train import build_network

            network = build_network(self.spec)
            weights = self._entries["train"].path / "weights"
            network.load_state_dict(_load_arrays(weights, tuple(network.state_dict())))
            self._values["network"] = network
        return self._values["network"]

    def history(self) -> list[dict]:
        """Per-epoch records as dicts; no validation set reads back as NaN."""
        if "history" not in self._values:
            records = _read_json(self._entries["train"].file("history.json"))
            self._values["history"] = [{k: math.nan if v is None else v for k, v in r.items()}
                                       for r in records]
        return self._values["history"]

    # ------------------------------------------------------------ the run folder

    def _run_metrics(self, stages: tuple[StageRecord, ...]) -> dict[str, Any]:
        metrics = _read_json(self._entries["evaluate"].file("metrics.json"))
        result = _read_json(self._entries["train"].file("result.json"))
        metrics.update(result)
        metrics["stages"] = [attrs.asdict(record) for record in stages]
        return metrics

    def _write_run_folder(self, out_dir: Path, metrics: dict[str, Any]) -> Path:
        """Fill a fresh folder, then swap it in: an earlier run folder is replaced whole.

        Only a missing folder, an empty one or an earlier run folder (it holds
        the `RUN_MARKER` file) is replaced; anything else is an error.
        """
        from mlpspec.report import history_csv

        shown, out_dir = Path(out_dir), Path(out_dir).resolve()
        _check_replaceable(out_dir)
        try:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        except OSError as error:
            raise MlpspecError(f"--out {out_dir}: cannot create the run folder: "
                               f"{error.strerror or error}") from None
        staging.chmod(0o755)  # mkdtemp makes it private; a run folder is for reading
        try:
            evaluate, export = self._entries["evaluate"], self._entries["export"]
            shutil.copyfile(export.file("model.mlpm"), staging / "model.mlpm")
            for picture in ("curves.png", "confusion.png", "errors.png"):
                shutil.copyfile(evaluate.file(picture), staging / picture)
            _write_json(staging / "metrics.json", metrics)
            (staging / "history.csv").write_text(history_csv(self.history()))
            (staging / "spec.resolved.toml").write_text(render_spec(self.spec))
            (staging / RUN_MARKER).write_text(f"{self.spec.name}\n")
            _swap_in(staging, out_dir)
        except OSError as error:
            raise MlpspecError(f"--out {out_dir}: cannot write the run folder: "
                               f"{error.strerror or error}") from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return shown


RUN_MARKER = ".mlpspec-run"


def _check_replaceable(folder: Path) -> None:
    """Refuse to replace anything but a missing or empty folder or an earlier run folder."""
    if not folder.exists():
        parent = next(p for p in folder.parents if p.exists())
        if not parent.is_dir():
            raise MlpspecError(f"--out {folder}: {parent} is not a folder")
        return
    if not folder.is_dir():
        raise MlpspecError(f"--out {folder}: exists and is not a folder")
    if (folder / RUN_MARKER).is_file() or not any(folder.iterdir()):
        return
    raise MlpspecError(f"--out {folder}: exists and is not an mlpspec run folder "
                       f"(no {RUN_MARKER} in it); choose another --out or remove it")


_PREPARED_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _read_scaling(entry: Entry, meta: Mapping[str, Any]):
    """The `Scaling` a preprocess entry stored."""
    from mlpspec.data.prepare import Scaling

    arrays = _load_arrays(entry.path, ("scaling_offset", "scaling_scale"))
    return Scaling(meta["scaling"], arrays["scaling_offset"], arrays["scaling_scale"])


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics stored inside a model file: accuracies and losses, no big tables."""
    keep = {}
    for split in ("test", "validation"):
        if split in metrics:
            keep[split] = {k: metrics[split][k] for k in ("accuracy", "loss", "samples")
                           if k in metrics[split]}
    return keep


def _check_features(spec: model.Spec, data) -> None:
    features = data.x_train.shape[1]
    if features != spec.network.inputs:
        raise MlpspecError(f"network.inputs: expected {features} (the data's samples flatten "
                           f"to {features} features), found {spec.network.inputs}")


def _then(write: Callable[[Path], Any], after: Callable[[], None]) -> Callable[[Path], Any]:
    def both(folder: Path):
        result = write(folder)
        after()
        return result

    return both


def _swap_in(staging: Path, target: Path) -> None:
    """Replace `target` with `staging`; the old folder is removed only once the new is in."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------ explain


@attrs.frozen
class Explanation:
    """Why a stage hits or misses the cache."""

    stage: str
    key: str
    hit: bool
    reasons: tuple[str, ...]
    compared_with: Entry | None = None


def explain(spec: model.Spec, base_dir: Path, cache: Cache) -> list[Explanation]:
    """For every stage: hit or miss and, on a miss, what changed since the last entry."""
    keys, info = stage_keys(spec, base_dir)
    result = []
    for stage in STAGES:
        if cache.peek(stage, keys[stage]) is not None:
            result.append(Explanation(stage, keys[stage], True, ()))
            continue
        previous = (cache.latest(stage, lambda e: e.manifest.get("spec_name") == spec.name)
                    or cache.latest(stage, lambda e: True))
        result.append(Explanation(stage, keys[stage], False,
                                  _differences(info[stage], previous), previous))
    return result


def _differences(current: Mapping[str, Any], previous: Entry | None) -> tuple[str, ...]:
    if previous is None:
        return ("no cached entry for this stage yet",)
    before = previous.manifest
    reasons = []
    if before.get("version") != current["version"]:
        reasons.append(f"stage version {before.get('version')} -> {current['version']}")
    old, new = _flatten(before.get("reads", {})), _flatten(current["reads"])
    for key in sorted(old.keys() | new.keys()):
        if old.get(key, _ABSENT) != new.get(key, _ABSENT):
            reasons.append(f"{key}: {_show(old.get(key, _ABSENT))} -> {_show(new.get(key, _ABSENT))}")
    for name, key in current["consumes"].items():
        if before.get("consumes", {}).get(name) != key:
            reasons.append(f"its input from stage {name!r} changed")
    if before.get("checksums", {}) != current["checksums"]:
        reasons.append("the data files changed (checksums differ)")
    if not reasons:
        reasons.append("the cached entry was removed or is incomplete")
    return tuple(reasons)


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def _flatten(table: Any, prefix: str = "") -> dict[str, Any]:
    """`{"train": {"epochs": 3}}` -> `{"train.epochs": 3}`; arrays index as `[i]`."""
    if isinstance(table, dict):
        out: dict[str, Any] = {}
        for key, value in table.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(table, list) and any(isinstance(v, (dict, list)) for v in table):
        out = {}
        for index, value in enumerate(table):
            out.update(_flatten(value, f"{prefix}[{index}]"))
        if not table:
            out[prefix] = []
        return out
    return {prefix: table}


# ------------------------------------------------------------ checkpoints


class Checkpoints:
    """The training checkpoint of one train key, written atomically."""

    def __init__(self, folder: Path):
        self.folder = folder

    def load(self, spec: model.Spec):
        from mlpspec.train import Checkpoint, EpochRecord

        state_file = self.folder / "state.json"
        if not state_file.exists():
            return None
        try:
            state = json.loads(state_file.read_text())
            arrays = {name: _load_arrays(self.folder / name, tuple(state["arrays"][name]))
                      for name in ("network", "optimizer")}
            best = (_load_arrays(self.folder / "best", tuple(state["arrays"]["best"]))
                    if state["arrays"].get("best") is not None else None)
            averaged = _load_arrays(self.folder / "averaged", tuple(state["arrays"]["averaged"]))
            history = [EpochRecord(**record) for record in state["history"]]
            return Checkpoint(state["epoch"], state["step"], history, arrays["network"],
                              arrays["optimizer"], state["shuffle_rng"], state["dropout_rngs"],
                              float(state["best_score"]), state["best_epoch"], best,
                              state["waited"], state["seconds"], averaged)
        except (OSError, ValueError, KeyError, TypeError):
            # A damaged checkpoint only costs the time to train again.
            self.clear()
            return None

    def save(self, checkpoint) -> None:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=self.folder.parent))
        try:
            _save_arrays(staging / "network", checkpoint.network)
            _save_arrays(staging / "optimizer", checkpoint.optimizer)
            if checkpoint.best_network is not None:
                _save_arrays(staging / "best", checkpoint.best_network)
            _save_arrays(staging / "averaged", checkpoint.averaged)
            state = {
                "epoch": checkpoint.epoch, "step": checkpoint.step,
                "history": [attrs.asdict(r) for r in checkpoint.history],
                "shuffle_rng": checkpoint.shuffle_rng, "dropout_rngs": checkpoint.dropout_rngs,
                "best_score": repr(checkpoint.best_score), "best_epoch": checkpoint.best_epoch,
                "waited": checkpoint.waited, "seconds": checkpoint.seconds,
                "arrays": {"network": list(checkpoint.network), "optimizer": list(checkpoint.optimizer),
                           "averaged": list(checkpoint.averaged),
                           "best": (list(checkpoint.best_network)
                                    if checkpoint.best_network is not None else None)},
            }
            (staging / "state.json").write_text(json.dumps(state))
            self.clear()
            os.rename(staging, self.folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def clear(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)


# ------------------------------------------------------------ array files


def _save_arrays(folder: Path, arrays: Mapping[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.asarray(array), allow_pickle=False)


def _load_arrays(folder: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in names}


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(_jsonable(value), indent=1))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _jsonable(value: Any) -> Any:
    """NaN (no validation set) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


__all__ = ["Pipeline", "STAGES", "explain", "stage_keys", "stage_reads"]
