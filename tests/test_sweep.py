"""Sweeps through the CLI: plan, validate up front, cache, engines, results, resume.

The data is a small synthetic npz problem (noisy blobs, 3 classes) so that a
trial takes about a second; the Dask tests start a real scheduler and two
workers on 127.0.0.1 as separate processes (`dask_cluster.py`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl
from typer.testing import CliRunner

from mlpspec.cli import app

from conftest import momentum_mlp, npz_spec
from dask_cluster import LocalDaskCluster

SPEC = npz_spec("blobs", inputs=64, seed=1,
                data='[data.validation]\ntake_from = "train"\nsize = 0.25\n') + momentum_mlp(8)

SWEEP = """spec = "blobs.toml"
seeds = [0, 1]
[grid]
"train.optimizer.learning_rate" = [0.003, 0.1]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A spec, a sweep file over it (2 learning rates x 2 seeds) and noisy 8x8 data."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 400), ("test", 150)):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 140, (n, 8, 8))
        for cls, (r, c) in enumerate([(0, 0), (4, 4), (0, 4)]):
            x[y == cls, r:r + 4, c:c + 4] += 70
        (tmp_path / "data").mkdir(exist_ok=True)
        np.savez(tmp_path / "data" / f"{name}.npz", x=x.astype(np.uint8), y=y)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "blobs.toml").write_text(
        SPEC.replace('"train.npz"', '"../data/train.npz"').replace('"test.npz"', '"../data/test.npz"'))
    (tmp_path / "specs" / "sweep.toml").write_text(SWEEP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLPSPEC_CACHE", raising=False)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def sweep(*args: str, out="sweeps/s", cache="cache"):
    return invoke("sweep", "specs/sweep.toml", "--out", out, "--cache-dir", cache, *args)


def rows(folder: Path) -> list[dict]:
    with open(folder / "results.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def model_bytes(folder: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(folder.glob("runs/*/model.mlpm"))}


def train_entries(cache: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (cache / "train").iterdir()} \
        if (cache / "train").is_dir() else {}


def test_sweep_writes_results_ranked_on_validation_and_a_runnable_best_spec(project):
    result = sweep()
    assert result.exit_code == 0, result.output
    folder = project / "sweeps" / "s"
    table = rows(folder)
    assert [r["trial"] for r in table] == ["000-seed0", "000-seed1", "001-seed0", "001-seed1"]
    assert {r["train.optimizer.learning_rate"] for r in table} == {"0.003", "0.1"}
    for row in table:
        assert row["status"] == "ran" and len(row["cache_key"]) == 64
        assert 0 <= float(row["validation_accuracy"]) <= 1 and float(row["train_seconds"]) > 0
        assert (project / row["run_folder"] / "model.mlpm").is_file()
    document = json.loads((folder / "results.json").read_text())
    assert len(document["trials"]) == 4
    board = document["leaderboard"]
    means = {}
    for row in table:
        means.setdefault(int(row["variant"]), []).append(float(row["validation_accuracy"]))
    expected = sorted(means, key=lambda v: -np.mean(means[v]))
    assert [entry["variant"] for entry in board] == expected
    assert means[0] != means[1]  # the ranking is not decided by a tie
    assert board[0]["validation_mean"] == pytest.approx(np.mean(means[expected[0]]))
    assert board[0]["validation_std"] == pytest.approx(np.std(means[expected[0]], ddof=1))
    assert "ranked by validation accuracy" in result.output
    assert (folder / "plots" / "train.optimizer.learning_rate.png").stat().st_size > 1000
    # The best spec is the best variant, resolved: run with the sweep's BLAS
    # thread count (1, as its header says), it trains nothing new.
    best = folder / "best.toml"
    assert "OPENBLAS_NUM_THREADS=1" in best.read_text()
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        run = invoke("run", best, "--cache-dir", "cache", "--json", "--out", "runs/best")
    assert run.exit_code == 0, run.output
    stages = {s["stage"]: s["status"] for s in json.loads(run.output)["stages"]}
    assert stages["train"] == "cached"
    best_trial = board[0]["trials"][0]
    assert json.loads(run.output)["validation"]["accuracy"] == pytest.approx(
        next(float(r["validation_accuracy"]) for r in table if r["trial"] == best_trial))


def test_rerun_trains_nothing_and_new_variants_reuse_the_cache(project):
    assert sweep("--seeds", "0").exit_code == 0
    before = train_entries(project / "cache")
    again = sweep("--seeds", "0")
    assert again.exit_code == 0, again.output
    assert "0 trained, 2 cached" in again.output
    assert train_entries(project / "cache") == before
    assert {r["status"] for r in rows(project / "sweeps" / "s")} == {"cached"}
    # A wider grid trains only the new learning rate.
    wider = sweep("--seeds", "0", "--grid", "train.optimizer.learning_rate=[0.003, 0.1, 0.03]")
    assert wider.exit_code == 0, wider.output
    assert "1 trained, 2 cached" in wider.output


def test_invalid_variants_are_all_reported_before_any_training(project):
    result = sweep("--grid", "network.layers[0].units=[8, 0]",
                   "--grid", "train.optimizer.learning_rate=[0.1, \"fast\"]")
    assert result.exit_code == 2, result.output
    assert "nothing was trained" in result.output
    out = result.output
    assert out.count("network.layers[0].units: expected") == 4  # 2 lr values x 2 seeds
    assert out.count("train.optimizer.learning_rate: expected") == 4
    assert "Traceback" not in out
    assert not (project / "cache" / "train").exists()
    assert not (project / "sweeps" / "s").exists()


def test_bad_sweep_file_lists_every_problem(project):
    (project / "specs" / "bad.toml").write_text(
        'spec = "blobs.toml"\nseeds = [1, 1]\nrank_by = "f1"\ncolour = 3\n'
        '[random]\ntrials = 0\n"train.optimizer.learning_rate" = { log_uniform = [0, 1] }\n')
    result = invoke("sweep", "specs/bad.toml", "--cache-dir", "cache")
    assert result.exit_code == 2
    for expected in ("colour: unknown key", "seeds: expected a non-empty array of distinct",
                     "rank_by: expected one of accuracy, loss, found 'f1'",
                     "random.trials: expected an integer in [1, 100000]",
                     "log_uniform: expected low > 0"):
        assert expected in result.output, result.output


def test_random_sampling_is_drawn_from_the_seed(project):
    args = ("--log-uniform", "train.optimizer.learning_rate=0.001,0.3", "--choice",
            "network.layers[0].units=[4, 8, 16]", "--trials", "3", "--seeds", "0")
    first = invoke("sweep", "specs/blobs.toml", "--out", "a", "--cache-dir", "cache", *args)
    assert first.exit_code == 0, first.output
    drawn = [(r["train.optimizer.learning_rate"], r["network.layers[0].units"]) for r in rows(project / "a")]
    assert len(set(drawn)) == 3
    assert all(0.001 <= float(lr) <= 0.3 and units in ("4", "8", "16") for lr, units in drawn)
    second = invoke("sweep", "specs/blobs.toml", "--out", "b", "--cache-dir", "cache", *args)
    assert "0 trained, 3 cached" in second.output
    assert [(r["train.optimizer.learning_rate"], r["network.layers[0].units"])
            for r in rows(project / "b")] == drawn


def test_jobs_2_gives_the_same_results_and_model_bytes_as_one_process(project):
    one = sweep("--seeds", "0", out="one", cache="cache-1")
    two = sweep("--seeds", "0", "--jobs", "2", out="two", cache="cache-2")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    assert (project / "one" / "leaderboard.txt").read_text() == (project / "two" / "leaderboard.txt").read_text()
    assert model_bytes(project / "one") == model_bytes(project / "two")
    assert len({r["worker"] for r in rows(project / "two")}) == 2  # both workers trained


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_keeps_finished_trials_and_the_same_command_resumes(project, jobs):
    interrupt_and_resume(project, ["--jobs", jobs])


def _default_ctrl_c() -> None:
    """In the child before exec: SIGINT back to its default, which Python turns into
    KeyboardInterrupt. A test runner started in the background by a non-interactive shell
    inherits SIGINT ignored, and so would the sweep: it would never see the Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_and_resume(project: Path, engine: list[str]) -> None:
    # 400 epochs: a trial trains for ~0.6 s, so the Ctrl-C sent after the first result lands
    # while others still train (with the fused momentum update, 40 epochs took ~0.06 s).
    command = [str(Path(sys.executable).parent / "mlpspec"), "sweep", "specs/sweep.toml",
               "--out", "sweeps/s", "--cache-dir", "cache", "--set", "train.epochs=400", *engine]
    process = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=_default_ctrl_c)
    results = project / "sweeps" / "s" / "results.csv"
    deadline = time.monotonic() + 120
    while not (results.is_file() and len(rows(results.parent)) >= 1):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    finished = len(rows(results.parent))
    assert 1 <= finished < 4
    resumed = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    # Trials that finished while the driver was stopping are kept too.
    counts = re.search(r"(\d+) trained, (\d+) cached, 0 failed", resumed.stdout)
    assert counts, resumed.stdout
    trained, cached = int(counts[1]), int(counts[2])
    # Whether the trials still running at Ctrl-C finish (and are then found cached) depends
    # on timing; what must hold: nothing finished is redone and the sweep completes.
    assert trained + cached == 4 and cached >= finished
    assert {r["status"] for r in rows(results.parent)} <= {"ran", "resumed", "cached"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalDaskCluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
        yield running


def test_dask_cluster_gives_the_same_leaderboard_and_bytes_as_local_jobs(project, cluster):
    local = sweep("--jobs", "2", out="local", cache="cache-local")
    remote = sweep("--scheduler", cluster.address, out="remote", cache="cache-remote")
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    assert (project / "local" / "leaderboard.txt").read_text() == \
        (project / "remote" / "leaderboard.txt").read_text()
    assert model_bytes(project / "local") == model_bytes(project / "remote")
    # The driver's cache got only what the workers sent back: they read neither it nor the data folder.
    assert sorted(p.name for p in (project / "cache-remote").iterdir() if p.name != "tmp") == \
        ["evaluate", "export", "train"]
    assert {r["worker"].split(":")[0] for r in rows(project / "remote")}
    rerun = sweep("--scheduler", cluster.address, out="remote", cache="cache-remote")
    assert "0 trained, 4 cached" in rerun.output


def test_ctrl_c_on_a_dask_driver_keeps_finished_trials_and_resumes(project, cluster):
    interrupt_and_resume(project, ["--scheduler", cluster.address])


def test_a_worker_killed_mid_trial_has_its_trial_retried(project, tmp_path_factory):
    with LocalDaskCluster(tmp_path_factory.mktemp("dask-kill"), workers=2) as cluster:
        outcome = {}
        args = ("--scheduler", cluster.address, "--set", "train.epochs=60", "--seeds", "0")
        thread = threading.Thread(target=lambda: outcome.setdefault("result", sweep(*args)))
        thread.start()
        killed = None
        with cluster.client() as client:
            pids = client.run(os.getpid)  # {worker address: pid}
            deadline = time.monotonic() + 120
            while killed is None:
                assert time.monotonic() < deadline and thread.is_alive()
                busy = [address for address, tasks in client.processing().items() if tasks]
                if busy:
                    time.sleep(0.5)  # inside the trial, not before it
                    killed = pids[busy[0]]
                    cluster.kill_worker(killed)
                time.sleep(0.05)
        thread.join(timeout=240)
        assert not thread.is_alive()
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    table = rows(project / "sweeps" / "s")
    assert [r["status"] for r in table] == ["ran", "ran"]
    assert all(int(r["worker"].split(":")[1]) != killed for r in table)


def test_run_with_set_keeps_the_run_folder_of_the_spec_as_written(project):
    plain = invoke("run", "specs/blobs.toml", "-q", "--cache-dir", "cache")
    assert plain.exit_code == 0, plain.output
    written = (project / "runs" / "blobs" / "model.mlpm").read_bytes()
    variant = invoke("run", "specs/blobs.toml", "--cache-dir", "cache", "--set", "train.epochs=2")
    assert variant.exit_code == 0, variant.output
    folders = sorted(p.name for p in (project / "runs").iterdir())
    assert len(folders) == 2 and folders[0] == "blobs" and folders[1].startswith("blobs-")
    assert f"note: --set changes the spec, so the run folder is runs/{folders[1]}" in variant.output
    assert (project / "runs" / "blobs" / "model.mlpm").read_bytes() == written
    assert "epochs = 2" in (project / "runs" / folders[1] / "spec.resolved.toml").read_text()
    # An override that changes nothing, or names the run, picks the folder by name as before.
    same = invoke("run", "specs/blobs.toml", "-q", "--cache-dir", "cache", "--set", "train.epochs=3")
    assert same.exit_code == 0 and "note:" not in same.output
    assert sorted(p.name for p in (project / "runs").iterdir()) == folders

    listing = invoke("runs", "ls", "--json")
    assert listing.exit_code == 0, listing.output
    infos = {Path(i["folder"]).name: i for i in json.loads(listing.output)}
    assert set(infos) == set(folders)
    assert infos["blobs"]["spec_hash"] != infos[folders[1]]["spec_hash"]
    assert infos["blobs"]["validation_accuracy"] == pytest.approx(json.loads(
        (project / "runs" / "blobs" / "metrics.json").read_text())["validation"]["accuracy"])
    table = invoke("runs", "ls")
    assert "blobs" in table.output and infos["blobs"]["spec_hash"] in table.output

    compare = invoke("runs", "compare", "runs/blobs", f"runs/{folders[1]}")
    assert compare.exit_code == 0, compare.output
    differing = [line.split()[0] for line in compare.output.splitlines()[1:] if line.strip()]
    assert differing[0] == "train.epochs" and "validation_accuracy" in differing
    assert [line.split() for line in compare.output.splitlines() if line.startswith("train.epochs")] \
        == [["train.epochs", "3", "2"]]
    missing = invoke("runs", "compare", "runs/blobs", "runs/nope")
    assert missing.exit_code == 2 and "runs/nope: not an mlpspec run folder" in missing.output


def test_a_local_worker_killed_mid_trial_has_its_trial_retried(project):
    command = [str(Path(sys.executable).parent / "mlpspec"), "sweep", "specs/sweep.toml", "--jobs", "2",
               "--out", "sweeps/s", "--cache-dir", "cache", "--set", "train.epochs=6000", "--seeds", "0"]
    process = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    # 6000 epochs: a trial trains for several seconds, so the kill lands before it ends
    while True:  # kill a pool worker about a second after it started: while it imports or trains
        assert process.poll() is None and time.monotonic() < deadline
        if _pool_workers(process.pid) and (project / "cache" / "preprocess").is_dir():
            time.sleep(1.0)
            os.kill(_pool_workers(process.pid)[0], signal.SIGKILL)
            break
        time.sleep(0.05)
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    assert "a local worker process died; retried in a fresh pool" in err
    assert [r["status"] for r in rows(project / "sweeps" / "s")] == ["ran", "ran"], err


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _pool_workers(pid: int) -> list[int]:
    """The spawned pool workers among `pid`'s children, told by their command line
    (`spawn_main`). Not "every child but the resource tracker": between its fork and
    its exec the tracker still shows the sweep's command line, and a test that took
    it for a worker killed the tracker (a KeyError in the log, no worker died)."""
    workers = []
    for child in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:  # ended meanwhile
            pass
    return workers


def test_the_shipped_mnist_sweep_plans_twelve_valid_trials():
    from mlpspec.sweep.plan import plan_sweep, read_sweep_file

    path = Path(__file__).resolve().parents[1] / "specs" / "sweeps" / "mnist-lr-width.toml"
    plan = plan_sweep(read_sweep_file(path))
    assert len(plan.trials) == 12
    assert len({t.keys["train"] for t in plan.trials}) == 12
    assert len({t.keys["preprocess"] for t in plan.trials}) == 2  # one data preparation per seed


def test_the_command_line_overrides_what_the_sweep_file_says(project):
    """--rank-by and --sample-seed win over the file's rank_by and random.seed, also when
    they name the default value or come without --trials (they were silently dropped)."""
    from mlpspec.sweep.plan import SweepDefinition, plan_sweep, read_sweep_file

    path = project / "specs" / "ranked.toml"
    path.write_text('spec = "blobs.toml"\nrank_by = "loss"\n[random]\ntrials = 2\nseed = 7\n'
                    '"train.optimizer.learning_rate" = {log_uniform = [0.001, 0.3]}\n')
    line = SweepDefinition(spec_path=path, name="", rank_by="accuracy", sample_seed=3)
    merged = plan_sweep(read_sweep_file(path, line)).definition
    assert (merged.rank_by, merged.sample_seed) == ("accuracy", 3)
    kept = plan_sweep(read_sweep_file(path, SweepDefinition(spec_path=path, name=""))).definition
    assert (kept.rank_by, kept.sample_seed) == ("loss", 7)
    drawn = {plan_sweep(read_sweep_file(path, SweepDefinition(spec_path=path, name="", sample_seed=s)))
             .trials[0].overrides for s in (3, 7)}
    assert len(drawn) == 2  # the seed given on the command line decides the draws
