"""tools/bench_train.py end to end, mlpspec against itself (`--peer mlpspec`: no torch needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("pairing", ["epoch", "run"])
def test_an_a_a_run_pairs_every_epoch_and_both_sides_train_alike(mnist_env, pairing):
    """Both sides run the same recipe in their own processes: the same accuracy, bit for bit;
    with epoch pairing the two processes take turns epoch by epoch (the lockstep protocol)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_train.py"), "--peer", "mlpspec",
         "--pairing", pairing, "--arch", "784-16-10", "--epochs", "2", "--rounds", "2", "--peak-seconds", "0.3"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["pairing"], report["peer"], report["epochs"], report["rounds"]) == (pairing, "mlpspec", 2, 2)
    (row,) = report["results"]
    assert row["pairs"] == (4 if pairing == "epoch" else 2)
    for side in ("mlpspec", "torch"):
        assert [len(epochs) for epochs in row[side]["epoch_seconds"]] == [2, 2]
        assert all(s > 0 for epochs in row[side]["epoch_seconds"] for s in epochs)
    assert row["mlpspec"]["test_accuracy"] == row["torch"]["test_accuracy"]
    assert row["accuracy_gap"] == 0 and row["mlpspec"]["test_accuracy"]["median"] > 0.85
    assert 0 < row["ratio"]["min"] <= row["ratio"]["median"] <= row["ratio"]["max"]
    assert "peer (mlpspec) s" in done.stdout
