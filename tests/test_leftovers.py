"""What a killed process leaves behind: found, reported and removed, never trusted.

Each kill is real: a child process runs mlpspec's own code and SIGKILLs itself
at a chosen point (inside a cache write, a run folder copy, between the two
renames of a swap). A child that stays alive waiting on its stdin stands for a
run still in progress, whose temporaries must be left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpspec import atomic
from mlpspec.cache import Cache
from mlpspec.checkpoint import Checkpoint
from mlpspec.cli import app
from mlpspec.export import write_model

from conftest import npz_spec

pytestmark = pytest.mark.skipif(os.name != "posix", reason="kills with SIGKILL")

# Kill this process right after the n-th os.rename (counting from 1).
KILL_AFTER_RENAME = """
import os, signal
_rename, _count = os.rename, [0]
def _killing_rename(source, target):
    _rename(source, target)
    _count[0] += 1
    if _count[0] == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = _killing_rename
"""


def killed(code: str, *args: str) -> None:
    """Run `code` in a child python that must die of SIGKILL."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr


class Alive:
    """A child that runs `code`, prints a line once set up, then waits until released."""

    def __init__(self, code: str, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.line = self.process.stdout.readline().strip()
        assert self.line, "the child died before it was set up"

    def release(self) -> int:
        self.process.stdin.close()
        return self.process.wait(timeout=60)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------ the cache

KILLED_PUT = """
import os, signal, sys
from pathlib import Path
from mlpspec.cache import Cache

def write(folder):
    (folder / "x_train.npy").write_bytes(bytes(5000))
    os.kill(os.getpid(), signal.SIGKILL)

Cache(Path(sys.argv[1])).put("load", sys.argv[2], write)
"""

LIVE_PUT = """
import sys
from pathlib import Path
from mlpspec.cache import Cache

def write(folder):
    (folder / "x_train.npy").write_bytes(bytes(3000))
    print(folder, flush=True)
    sys.stdin.read()

Cache(Path(sys.argv[1])).put("load", sys.argv[2], write)
"""


def test_killed_cache_write_is_reported_and_removed_by_the_next_write(tmp_path):
    root = tmp_path / "cache"
    live = Alive(LIVE_PUT, root, "b" * 64)
    killed(KILLED_PUT, root, "a" * 64)
    [leftover] = [p for p in (root / "tmp").iterdir() if p != Path(live.line)]
    assert Cache(root).peek("load", "a" * 64) is None  # never mistaken for an entry
    assert Cache(root).stale_size() == (1, 5000)  # the running write is not stale
    listing = CliRunner().invoke(app, ["cache", "ls", "--cache-dir", str(root)])
    assert listing.exit_code == 0, listing.output
    assert "1 stale temporaries (4.9 KB)" in listing.output

    Cache(root).put("load", "c" * 64, lambda folder: (folder / "y.npy").write_bytes(b"y") and None)
    assert not leftover.exists()
    assert Path(live.line).is_dir()  # a running write keeps its folder
    assert live.release() == 0
    assert Cache(root).get("load", "b" * 64) is not None  # ... and finishes it
    assert list((root / "tmp").iterdir()) == []


def test_cache_clear_removes_stale_temporaries_and_keeps_live_ones(tmp_path):
    root = tmp_path / "cache"
    live = Alive(LIVE_PUT, root, "b" * 64)
    killed(KILLED_PUT, root, "a" * 64)
    cleared = CliRunner().invoke(app, ["cache", "clear", "--cache-dir", str(root)])
    assert cleared.exit_code == 0, cleared.output
    assert "removed 1 stale temporaries, 4.9 KB" in cleared.output
    assert [p.name for p in (root / "tmp").iterdir()] == [Path(live.line).name]
    assert live.release() == 0
    listing = CliRunner().invoke(app, ["cache", "ls", "--cache-dir", str(root)])
    assert "stale temporaries" not in listing.output and "1 entries" in listing.output


def test_leftovers_of_older_versions_in_the_cache_tmp_folder_are_stale(tmp_path):
    """Before owners were recorded, a killed write left `tmp/<stage>-<random>/` (53 MB for MNIST)."""
    root = tmp_path / "cache"
    (root / "tmp" / "load-k2j3h4l5").mkdir(parents=True)
    (root / "tmp" / "load-k2j3h4l5" / "x_train.npy").write_bytes(bytes(2048))
    listing = CliRunner().invoke(app, ["cache", "ls", "--cache-dir", str(root)])
    assert "1 stale temporaries (2.0 KB)" in listing.output
    assert listing.output.strip().endswith("empty")
    Cache(root).put("load", "a" * 64, lambda folder: None)
    assert list((root / "tmp").iterdir()) == []


# ------------------------------------------------------------ the run folder

@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A tiny spec on 4x4 three-class npz data that trains in a blink."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 60), ("test", 30)):
        y = rng.integers(0, 3, n)
        np.savez(tmp_path / f"{name}.npz", x=rng.integers(0, 255, (n, 4, 4)).astype(np.uint8), y=y)
    (tmp_path / "tiny.toml").write_text(npz_spec("tiny", inputs=16, data='[data.validation]\ntake_from = "none"\n') + (
        '[[network.layers]]\ntype = "dense.v1"\nunits = 3\n'
        "[train]\nepochs = 1\nbatch_size = 30\n"))
    return tmp_path


def mlpspec_run(project: Path, *args: str):
    result = CliRunner().invoke(app, ["run", str(project / "tiny.toml"), "-q", "--cache-dir",
                                      str(project / "cache"), "--out", str(project / "runs" / "tiny"),
                                      *args])
    assert result.exit_code == 0, result.output
    return result


KILLED_COPY = """
import os, signal, sys
from pathlib import Path
from mlpspec import atomic

with atomic.staging_folder(Path(sys.argv[1])) as staging:
    (staging / "model.mlpm").write_bytes(bytes(1000))
    os.kill(os.getpid(), signal.SIGKILL)
"""

KILLED_SWAP = KILL_AFTER_RENAME.replace("KILL_AT", "1") + """
import sys
from pathlib import Path
from mlpspec import runs

runs.write_run_folder(Path(sys.argv[1]), copies={}, texts={"metrics.json": "{}"}, name="tiny")
"""

LIVE_STAGING = """
import sys
from pathlib import Path
from mlpspec import atomic

with atomic.staging_folder(Path(sys.argv[1])) as staging:
    print(staging, flush=True)
    sys.stdin.read()
"""


def test_killed_run_folder_copy_is_removed_by_the_next_run(project):
    runs = project / "runs"
    mlpspec_run(project)
    live = Alive(LIVE_STAGING, runs / "tiny")
    killed(KILLED_COPY, runs / "tiny")
    assert len(hidden(runs)) == 2
    mlpspec_run(project, "--set", "evaluate.misclassified=3")
    assert hidden(runs) == [Path(live.line).name]  # the dead runs' copies are gone
    assert json.loads((runs / "tiny" / "metrics.json").read_text())["test"]["samples"] == 30
    assert live.release() == 0
    assert hidden(runs) == []


def test_kill_between_the_renames_of_a_swap_keeps_the_earlier_run_folder(project):
    runs = project / "runs"
    mlpspec_run(project)
    before = {p.name: p.read_bytes() for p in (runs / "tiny").iterdir()}
    killed(KILLED_SWAP, runs / "tiny")
    assert not (runs / "tiny").exists()  # set aside, the new one not yet in
    assert sorted(name.split("-")[0] for name in hidden(runs)) == [".tiny.old", ".tiny.tmp"]
    # The next run puts the earlier folder back before anything else.
    from mlpspec.runs import tidy

    tidy(runs / "tiny")
    assert {p.name: p.read_bytes() for p in (runs / "tiny").iterdir()} == before
    assert hidden(runs) == []
    mlpspec_run(project)
    assert hidden(runs) == []


# ------------------------------------------------------------ checkpoints

def checkpoint(epoch: int) -> Checkpoint:
    return Checkpoint(epoch, 10 * epoch, [], {"0.W": np.full((2, 3), float(epoch))}, {}, {}, [],
                      float("-inf"), 0, None, 0, 1.5)


KILLED_CHECKPOINT = KILL_AFTER_RENAME + """
import sys
import numpy as np
from pathlib import Path
from mlpspec.checkpoint import Checkpoint

Checkpoint(2, 20, [], {"0.W": np.full((2, 3), 2.0)}, {}, {}, [], float("-inf"), 0, None, 0,
           1.5).save(Path(sys.argv[1]))
"""


def test_a_new_checkpoint_replaces_the_old_one_whole(tmp_path):
    folder = tmp_path / "checkpoints" / "key"
    checkpoint(1).save(folder)
    checkpoint(2).save(folder)
    loaded = Checkpoint.load(folder)
    assert loaded.epoch == 2 and loaded.step == 20 and loaded.best_score == float("-inf")
    np.testing.assert_array_equal(loaded.network["0.W"], np.full((2, 3), 2.0))
    assert hidden(folder.parent) == []


@pytest.mark.parametrize("kill_at, epoch", [(1, 1), (2, 2)])
def test_a_killed_checkpoint_save_leaves_the_old_or_the_new_checkpoint(tmp_path, kill_at, epoch):
    """Killed after setting the old one aside: the old one is back; after the swap: the new."""
    folder = tmp_path / "checkpoints" / "key"
    checkpoint(1).save(folder)
    killed(KILLED_CHECKPOINT.replace("KILL_AT", str(kill_at)), folder)
    loaded = Checkpoint.load(folder)
    assert loaded is not None and loaded.epoch == epoch
    np.testing.assert_array_equal(loaded.network["0.W"], np.full((2, 3), float(epoch)))
    assert hidden(folder.parent) == []


# ------------------------------------------------------------ single files

KILLED_FILE_WRITE = """
import os, signal, sys
from mlpspec import atomic

with atomic.writing(sys.argv[1]) as stream:
    stream.write(b"half a model")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_file_write_leaves_the_old_file_and_the_next_write_tidies(tmp_path):
    path = tmp_path / "model.mlpm"
    write_model(path, b"old")
    killed(KILLED_FILE_WRITE, path)
    assert path.read_bytes() == b"old"
    assert len(hidden(tmp_path)) == 1
    write_model(path, b"new")
    assert path.read_bytes() == b"new"
    assert hidden(tmp_path) == []


def test_atomic_files_get_the_permissions_of_any_new_file(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_model(tmp_path / "model.mlpm", b"x")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by all, like any file written


def test_temporaries_of_other_hosts_are_never_stale(tmp_path):
    mine = atomic.temporary_path(tmp_path / "x")
    other = tmp_path / ".x.tmp-otherhost-1-abcd"  # pid 1 is alive, but not ours to judge anyway
    dead_elsewhere = tmp_path / f".x.tmp-otherhost-{2 ** 22 + 7}-abcd"
    for path in (mine, other, dead_elsewhere):
        path.write_bytes(b"")
    assert atomic.is_stale(mine) is False and atomic.is_stale(other) is False
    assert atomic.is_stale(dead_elsewhere) is False
    assert atomic.is_stale(tmp_path / "x") is None
