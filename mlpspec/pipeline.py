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

This module is the stage graph only: what each stage reads and consumes, and
the driving. The types it stores save and load themselves (`RawDataset`,
`Prepared`, `Checkpoint`); the run folder is `mlpspec.runs`, `cache explain`
is `mlpspec.explain`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from mlpspec import atomic, compute, runs
from mlpspec.cache import Cache, Entry, file_sha256, stage_key
from mlpspec.errors import MlpspecError, RunInterrupted
from mlpspec.files import jsonable, load_arrays, read_json, save_arrays, write_json
from mlpspec.progress import Progress
from mlpspec.spec import model, render_spec
from mlpspec.spec.schema import unstructure

STAGES = ("load", "preprocess", "train", "evaluate", "export")
STAGE_VERSIONS = {"load": 1, "preprocess": 2, "train": 2, "evaluate": 1, "export": 2}
# train 2: momentum.v1 keeps its velocity scaled (mlpspec.nn.optim.Momentum) and the dense
# training forward accumulates onto the bias: same maths, other roundings
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
    # The task decides how targets are read and encoded; named only when not the
    # default, so classification keys stay as they were.
    task = {"task": spec.task} if spec.task != "classification" else {}
    return {
        "load": {"data": source, **task},
        "preprocess": {"data": {"preprocess": data["preprocess"], "validation": data["validation"]},
                       "seed": spec.seed, "train": {"precision": spec.train.precision}, **task},
        # Augmentation happens inside the training loop, on the prepared data.
        "train": {"network": table["network"], "train": table["train"], "seed": spec.seed,
                  "data": {"augment": data["augment"]},
                  # The BLAS build and thread count decide the last bits of the weights.
                  "compute": compute.environment()},
        "evaluate": {"evaluate": table["evaluate"]},
        # The model file embeds the resolved spec as provenance.
        "export": {"spec": table},
    }


def data_checksums(spec: model.Spec, base_dir: Path) -> dict[str, str]:
    """Checksums identifying the data: published ones for built-ins, file hashes otherwise."""
    from mlpspec.datasets import BUILTIN_DATASETS

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
        self._after_stored: dict[str, Callable[[], None]] = {}

    # ------------------------------------------------------------ driving

    def run(self, out_dir: Path | None) -> RunResult:
        # Fail before any work, not after an hour of training.
        self.cache.ensure_usable()
        self.cache.tidy()
        if out_dir is not None:
            runs.check_replaceable(Path(out_dir).resolve())
            runs.tidy(out_dir)
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
            if stage in self._after_stored:
                self._after_stored.pop(stage)()
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

        raw = load_raw(self.spec.data, self.base_dir, log=self.progress.message, task=self.spec.task)
        return "ran", raw.save

    def _compute_preprocess(self):
        from mlpspec.data.load import RawDataset
        from mlpspec.data.prepare import prepare

        raw = RawDataset.load(self._entries["load"].path)
        data = prepare(raw, self.spec.data, self.spec.seed, self.spec.train.precision,
                       log=self.progress.message)
        _check_features(self.spec, data)
        self._values["prepared"] = data
        return "ran", data.save

    def _compute_train(self):
        from mlpspec.checkpoint import Checkpoint
        from mlpspec.train import Interrupted, fit

        data = self.prepared()
        # Again here: a cached preprocess stage (its key does not cover network.inputs)
        # skipped the check in _compute_preprocess.
        _check_features(self.spec, data)
        checkpoint_dir = self.cache.checkpoint_dir(self.keys["train"])
        if self.force:
            atomic.remove(checkpoint_dir)
        resume = Checkpoint.load(checkpoint_dir)
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
                interrupted.checkpoint.save(checkpoint_dir)
            except OSError as error:
                raise RunInterrupted(f"interrupted; could not keep a checkpoint in "
                                     f"{checkpoint_dir}: {error.strerror or error}") from None
            raise RunInterrupted(
                f"interrupted; kept a checkpoint after epoch {interrupted.checkpoint.epoch} of "
                f"{self.spec.train.epochs} — run the same command again to resume") from None
        finally:
            self.progress.training_finished()
        self._values["network"] = result.network
        history = [attrs.asdict(record) for record in result.history]
        self._values["history"] = history

        def write(folder: Path):
            save_arrays(folder / "weights", result.network.state_dict())
            write_json(folder / "history.json", history)
            write_json(folder / "result.json", {
                "train_seconds": result.seconds, "best_epoch": result.best_epoch,
                "stopped_early": result.stopped_early, "epochs_run": len(result.history),
                "resumed_from_epoch": resume.epoch if resume else 0,
                "compute": compute.environment()})

        # The checkpoint goes only once the entry holding its result is stored.
        self._after_stored["train"] = lambda: atomic.remove(checkpoint_dir)
        return ("resumed" if resume else "ran"), write

    def _compute_evaluate(self):
        from mlpspec.evaluate import evaluate_run

        data = self.prepared()
        network = self.network()
        history = self.history()

        def write(folder: Path):
            metrics = evaluate_run(self.spec, network, data, history, folder)
            write_json(folder / "metrics.json", metrics)

        return "ran", write

    def _compute_export(self):
        from mlpspec.export import model_to_bytes

        data = self.prepared(mapped=True)
        metrics = read_json(self._entries["evaluate"].file("metrics.json"))
        blob = model_to_bytes(self.network(), self.spec, scaling=data.scaling,
                              raw_input=data.raw_input, encoder=data.encoder,
                              sample_shape=data.sample_shape,
                              class_names=data.class_names,
                              targets=_targets(data),
                              metrics=_headline(metrics), checksums=data.checksums,
                              cache_key=self.keys["train"])

        def write(folder: Path):
            (folder / "model.mlpm").write_bytes(blob)

        return "ran", write

    # ------------------------------------------------------------ artifacts

    def prepared(self, *, mapped: bool = False):
        """The preprocessed data (from memory or the preprocess entry).

        `mapped=True` is for callers that want the small fields only: the
        arrays of an entry not yet in memory are mapped, not read.
        """
        if "prepared" in self._values:
            return self._values["prepared"]
        from mlpspec.data.prepare import Prepared

        data = Prepared.load(self._entries["preprocess"].path, mmap=mapped)
        if not mapped:
            self._values["prepared"] = data
        return data

    def network(self):
        if "network" not in self._values:
            from mlpspec.train import build_network

            network = build_network(self.spec)
            weights = self._entries["train"].path / "weights"
            network.load_state_dict(load_arrays(weights, tuple(network.state_dict())))
            self._values["network"] = network
        return self._values["network"]

    def history(self) -> list[dict]:
        """Per-epoch records as dicts; no validation set reads back as NaN."""
        if "history" not in self._values:
            records = read_json(self._entries["train"].file("history.json"))
            self._values["history"] = [{k: math.nan if v is None else v for k, v in r.items()}
                                       for r in records]
        return self._values["history"]

    # ------------------------------------------------------------ the run folder

    def _run_metrics(self, stages: tuple[StageRecord, ...]) -> dict[str, Any]:
        metrics = read_json(self._entries["evaluate"].file("metrics.json"))
        result = read_json(self._entries["train"].file("result.json"))
        metrics.update(result)
        metrics["stages"] = [attrs.asdict(record) for record in stages]
        return metrics

    def _write_run_folder(self, out_dir: Path, metrics: dict[str, Any]) -> Path:
        """The run folder: the model file, the pictures, metrics, history and resolved spec."""
        from mlpspec.evaluate import PICTURES
        from mlpspec.report import history_csv

        evaluate, export = self._entries["evaluate"], self._entries["export"]
        copies = {"model.mlpm": export.file("model.mlpm")}
        copies.update({picture: evaluate.file(picture) for picture in PICTURES[self.spec.task]})
        texts = {"metrics.json": json.dumps(jsonable(metrics), indent=1),
                 "history.csv": history_csv(self.history()),
                 "spec.resolved.toml": render_spec(self.spec)}
        return runs.write_run_folder(out_dir, copies=copies, texts=texts, name=self.spec.name)


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics stored inside a model file: accuracies and losses, no big tables."""
    keep = {}
    for split in ("test", "validation"):
        if split in metrics:
            keep[split] = {k: metrics[split][k] for k in ("accuracy", "rmse", "mae", "r2", "loss",
                                                          "samples") if k in metrics[split]}
    return keep


def _targets(data) -> dict[str, Any] | None:
    """The regression targets for the model file: names and scaling; None for classification."""
    if data.target_scaling is None:
        return None
    return {"names": list(data.target_names), "scaling": data.target_scaling}


def _check_features(spec: model.Spec, data) -> None:
    features = data.x_train.shape[1]
    if features != spec.network.inputs:
        encoded = (f" (the columns encode to {features} inputs: "
                   f"{', '.join(data.encoder.input_names()[:12])}"
                   f"{', ...' if features > 12 else ''})" if data.encoder is not None else
                   f" (the data's samples flatten to {features} features)")
        raise MlpspecError(f"network.inputs: expected {features}{encoded}, found {spec.network.inputs}")
    dense = [layer for layer in spec.network.layers if isinstance(layer, model.DenseLayer)]
    if data.classes and dense and dense[-1].units != data.classes:
        raise MlpspecError(f"network.layers: the last dense layer has {dense[-1].units} units, "
                           f"expected {data.classes} (the classes in the training labels: "
                           f"{', '.join(data.class_names[:12])})")
    loss = spec.train.loss
    weights = loss.class_weights if isinstance(loss, model.CrossEntropyLoss) else ()
    if weights and data.classes and len(weights) != data.classes:
        raise MlpspecError(f"train.loss.class_weights: expected {data.classes} weights (one per "
                           f"class: {', '.join(data.class_names[:12])}), found {len(weights)}")
    if data.target_scaling is not None:
        check_targets(spec, data.y_train.shape[1])


#: The spec against prepared data (network.inputs, the output layer): `validate` uses it too.
check_features = _check_features


def check_targets(spec: model.Spec, targets: int) -> None:
    """Regression: the last dense layer (the output) has one unit per target."""
    layers = spec.network.layers
    last = max(i for i, layer in enumerate(layers) if isinstance(layer, model.DenseLayer))
    if layers[last].units != targets:
        raise MlpspecError(f"network.layers[{last}].units: expected {targets} (the number of "
                           f"targets in the data; the last dense layer is the output), found "
                           f"{layers[last].units}")


__all__ = ["Pipeline", "STAGES", "stage_keys", "stage_reads"]
