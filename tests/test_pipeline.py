"""The pipeline on small synthetic data: caching, invalidation, resume, the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpspec.cache import Cache
from mlpspec.cli import app
from mlpspec.errors import MlpspecError, RunInterrupted
from mlpspec.explain import explain
from mlpspec.pipeline import Pipeline
from mlpspec.progress import Progress
from mlpspec.spec import load_spec

from conftest import npz_spec

SPEC = npz_spec("digits", inputs=64, seed=1,
                data='[data.validation]\ntake_from = "train"\nsize = 0.2\nstratify = false\n') + """
[[network.layers]]
type = "dense.v1"
units = 16
[[network.layers]]
type = "relu.v1"
[[network.layers]]
type = "dropout.v1"
rate = 0.2
[[network.layers]]
type = "dense.v1"
units = 3
[train]
epochs = 4
batch_size = 32
[train.optimizer]
type = "momentum.v1"
learning_rate = 0.05
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a spec and 8x8 three-class npz data (bright blobs in different corners)."""
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 60, (n, 8, 8))
        for cls, (r, c) in enumerate([(0, 0), (4, 4), (0, 4)]):
            x[y == cls, r:r + 4, c:c + 4] += 150
        return x.astype(np.uint8), y

    for name, n in (("train", 400), ("test", 150)):
        x, y = split(n)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    (tmp_path / "digits.toml").write_text(SPEC)
    return tmp_path


def run(project: Path, *overrides: str, progress: Progress | None = None, force=False,
        out: str = "runs/digits"):
    spec = load_spec(project / "digits.toml", overrides)
    pipeline = Pipeline(spec, project, Cache(project / "cache"), progress or Progress(), force=force)
    return pipeline.run(project / out)


def statuses(result) -> dict[str, str]:
    return {record.stage: record.status for record in result.stages}


def trained_weights(project: Path, result) -> dict[str, bytes]:
    key = next(r.key for r in result.stages if r.stage == "train")
    folder = project / "cache" / "train" / key / "weights"
    return {p.name: np.load(p, allow_pickle=False).tobytes() for p in sorted(folder.glob("*.npy"))}


def test_first_run_computes_everything_and_writes_the_run_folder(project):
    result = run(project)
    assert statuses(result) == dict.fromkeys(["load", "preprocess", "train", "evaluate", "export"], "ran")
    folder = project / "runs" / "digits"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".mlpspec-run", "confusion.png", "curves.png", "errors.png", "history.csv", "metrics.json", "model.mlpm",
        "spec.resolved.toml"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9
    assert set(metrics["test"]["per_class"]) == {"precision", "recall", "f1"}
    assert np.array(metrics["test"]["confusion_matrix"]).sum() == 150
    assert metrics["validation"]["samples"] == 80
    assert metrics["train_seconds"] > 0
    assert [s["stage"] for s in metrics["stages"]] == ["load", "preprocess", "train", "evaluate", "export"]
    assert (folder / "history.csv").read_text().count("\n") == 5
    for picture in ("curves.png", "confusion.png", "errors.png"):
        assert (folder / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unchanged_spec_reruns_nothing(project):
    first = run(project)
    second = run(project)
    assert set(statuses(second).values()) == {"cached"}
    assert second.metrics["test"] == first.metrics["test"]


def test_changing_evaluate_reruns_evaluation_only(project):
    run(project)
    result = run(project, "evaluate.misclassified=5")
    assert statuses(result) == {"load": "cached", "preprocess": "cached", "train": "cached",
                                "evaluate": "ran", "export": "ran"}


def test_changing_the_network_reruns_training_not_data(project):
    run(project)
    result = run(project, "network.layers[0].units=24")
    assert statuses(result) == {"load": "cached", "preprocess": "cached", "train": "ran",
                                "evaluate": "ran", "export": "ran"}


def test_changing_the_seed_reruns_the_split_and_training(project):
    first = run(project)
    second = run(project, "seed=2")
    assert statuses(second) == {"load": "cached", "preprocess": "ran", "train": "ran",
                                "evaluate": "ran", "export": "ran"}
    assert trained_weights(project, second) != trained_weights(project, first)


def test_changed_data_file_reruns_everything(project):
    run(project)
    data = dict(np.load(project / "test.npz"))
    data["y"][0] = (data["y"][0] + 1) % 3
    np.savez(project / "test.npz", **data)
    assert statuses(run(project))["load"] == "ran"


def test_corrupted_entry_is_detected_and_recomputed(project):
    first = run(project)
    key = next(r.key for r in first.stages if r.stage == "train")
    weight = next((project / "cache" / "train" / key / "weights").glob("*.npy"))
    data = bytearray(weight.read_bytes())
    data[-1] ^= 0xFF
    weight.write_bytes(bytes(data))
    second = run(project, force=False)
    assert statuses(second)["train"] == "ran"
    assert trained_weights(project, second) == trained_weights(project, first)


def test_force_recomputes(project):
    run(project)
    assert set(statuses(run(project, force=True)).values()) == {"ran"}


class InterruptAt(Progress):
    def __init__(self, epoch: int, batch: int):
        self.at = (epoch, batch)

    def step(self, epoch, batch, loss, accuracy):
        if (epoch, batch) == self.at:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_to_the_same_weights(project):
    reference = run(project, out="runs/reference")
    reference_weights = trained_weights(project, reference)
    Cache(project / "cache").clear()
    with pytest.raises(RunInterrupted, match="kept a checkpoint after epoch 2 of 4"):
        run(project, progress=InterruptAt(3, 4))
    assert list((project / "cache" / "checkpoints").iterdir())
    resumed = run(project)
    assert statuses(resumed)["train"] == "resumed"
    assert trained_weights(project, resumed) == reference_weights
    assert not list((project / "cache" / "checkpoints").iterdir())
    history = (project / "runs" / "digits" / "history.csv").read_text().splitlines()
    assert [line.split(",")[:3] for line in history] == [
        line.split(",")[:3] for line in (project / "runs" / "reference" / "history.csv").read_text().splitlines()]


def test_interrupt_in_first_epoch_keeps_no_checkpoint(project):
    with pytest.raises(RunInterrupted, match="before the first epoch finished"):
        run(project, progress=InterruptAt(1, 2))


def test_failed_run_keeps_the_earlier_run_folder(project):
    run(project)
    before = {p.name: p.read_bytes() for p in (project / "runs" / "digits").iterdir()}
    with pytest.raises(MlpspecError, match="diverged"):
        run(project, "train.optimizer.learning_rate=1e9", "train.epochs=2")
    after = {p.name: p.read_bytes() for p in (project / "runs" / "digits").iterdir()}
    assert after == before
    assert not [p for p in (project / "runs").iterdir() if p.name.startswith(".")]


def test_explain_names_the_changed_key(project):
    run(project)
    spec = load_spec(project / "digits.toml", ["train.batch_size=16"])
    items = {item.stage: item for item in explain(spec, project, Cache(project / "cache"))}
    assert items["preprocess"].hit and not items["train"].hit
    assert items["train"].reasons == ("train.batch_size: 32 -> 16",)


def test_cli_run_cache_commands(project, monkeypatch):
    monkeypatch.chdir(project)
    runner = CliRunner()
    first = runner.invoke(app, ["run", "digits.toml", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["test"]["accuracy"] > 0.9
    assert Path(summary["run_dir"]) == Path("runs/digits")
    second = runner.invoke(app, ["run", "digits.toml"])
    assert second.exit_code == 0
    assert second.output.count("cached") >= 5
    listing = runner.invoke(app, ["cache", "ls"])
    assert "5 entries" in listing.output
    explained = runner.invoke(app, ["cache", "explain", "digits.toml", "--set", "seed=9"])
    assert "seed: 1 -> 9" in explained.output
    cleared = runner.invoke(app, ["cache", "clear"])
    assert "removed 5 entries" in cleared.output
    assert runner.invoke(app, ["cache", "ls"]).output.strip().endswith("empty")


def test_no_validation_set(project):
    result = run(project, 'data.validation.take_from="none"')
    assert "validation" not in result.metrics
    assert (project / "runs" / "digits" / "curves.png").exists()
    history = (project / "runs" / "digits" / "history.csv").read_text().splitlines()
    assert history[1].split(",")[3:5] == ["", ""]


def test_evaluate_command_scores_a_model_file(project, monkeypatch):
    monkeypatch.chdir(project)
    runner = CliRunner()
    assert runner.invoke(app, ["run", "digits.toml", "-q"]).exit_code == 0
    result = runner.invoke(app, ["evaluate", "runs/digits/model.mlpm", "--on", "digits.toml",
                                 "--out", "eval", "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.output)
    trained = json.loads((project / "runs" / "digits" / "metrics.json").read_text())["test"]
    assert scored["accuracy"] == trained["accuracy"] and scored["samples"] == trained["samples"]
    assert sorted(p.name for p in (project / "eval").iterdir()) == [
        "confusion.png", "errors.png", "metrics.json"]
    missing = runner.invoke(app, ["evaluate", "nope.mlpm", "--on", "digits.toml"])
    assert missing.exit_code == 2 and "nope.mlpm: cannot read the file" in missing.output
    wrong = runner.invoke(app, ["evaluate", "runs/digits/model.mlpm", "--on", "nothing"])
    assert wrong.exit_code == 2 and "neither a built-in dataset" in wrong.output


def test_out_never_replaces_a_folder_that_is_not_a_run(project):
    precious = project / "mydocs"
    precious.mkdir()
    (precious / "thesis.txt").write_text("precious")
    with pytest.raises(MlpspecError, match="exists and is not an mlpspec run folder"):
        run(project, out="mydocs")
    assert (precious / "thesis.txt").read_text() == "precious"
    (project / "afile").write_text("x")
    with pytest.raises(MlpspecError, match="exists and is not a folder"):
        run(project, out="afile")
    assert (project / "afile").read_text() == "x"
    run(project, out="empty")  # a fresh folder, then replacing an earlier run folder
    run(project, "evaluate.misclassified=3", out="empty")
    assert (project / "empty" / "model.mlpm").exists()


def test_unusable_cache_folder_is_a_clean_error(project, monkeypatch):
    monkeypatch.chdir(project)
    (project / "plainfile").write_text("x")
    runner = CliRunner()
    for args in (["run", "digits.toml", "--cache-dir", "plainfile"],
                 ["run", "digits.toml", "--cache-dir", "plainfile/c"],
                 ["run", "digits.toml", "--out", "plainfile/o"],
                 ["run", "digits.toml", "--out", "."],
                 ["cache", "ls", "--cache-dir", "plainfile"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert result.output.startswith("error: "), result.output


def test_data_file_errors_name_the_spec_key(project):
    (project / "test.npz").write_text("not an archive")
    with pytest.raises(MlpspecError, match=r"^data\.test: .*test\.npz: not an .npz archive"):
        run(project)
    (project / "train.npz").unlink()
    with pytest.raises(MlpspecError, match=r"^data\.train: .*train\.npz: cannot read the file"):
        run(project)
