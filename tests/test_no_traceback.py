"""Hostile or broken environments and inputs end in a message and exit code 2, never a traceback.

Each test goes through the command line (typer's CliRunner on `mlpspec.cli.app`,
or a subprocess where the process environment is the point) and checks the
exit code, the message (which names the file, setting or path) and that no
traceback is printed.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from mlpspec.cache import Cache, verify
from mlpspec.data.download import fetch_file
from mlpspec.data.sources import RemoteFile
from mlpspec.errors import DownloadError

from conftest import SPECS, invoke, mnist_mirror, npz_spec

try:
    import resource
except ImportError:  # not on Windows
    resource = None





def fails_with(message: str, *args: str) -> str:
    """Run the CLI; it must exit 2 with `message` in its output. Returns the output."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    return result.output


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A folder with train.npz, test.npz and spec.toml: 4 features, 3 classes, 2 epochs."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 60), ("test", 30)):
        np.savez(tmp_path / f"{name}.npz", x=rng.normal(size=(n, 4)), y=rng.integers(0, 3, n))
    (tmp_path / "spec.toml").write_text(
        npz_spec("tiny", inputs=4, data="[data.validation]\nsize = 10\n")
        + '[[network.layers]]\ntype = "dense.v1"\nunits = 3\n[train]\nepochs = 2\nbatch_size = 16\n')
    return tmp_path


# ---------------------------------------------------------------- 1. MLPSPEC_HOME


@pytest.mark.parametrize("command", [("data", "info", "mnist"), ("data", "fetch", "mnist")])
@pytest.mark.parametrize("kind", ["regular file", "under /proc", "folder where the dataset folder goes"])
def test_unusable_data_home_names_mlpspec_home(tmp_path, monkeypatch, command, kind):
    if kind == "regular file":
        home = tmp_path / "home"
        home.write_text("not a folder")
        expected = f"cannot create the data folder {home / 'datasets' / 'mnist'}: Not a directory"
    elif kind == "under /proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc")
        home = Path("/proc/self/mlpspec-home")
        expected = f"cannot create the data folder {home / 'datasets' / 'mnist'}"
    else:
        home = tmp_path / "home"
        (home / "datasets").mkdir(parents=True)
        (home / "datasets" / "mnist").write_text("a file")
        expected = f"{home / 'datasets' / 'mnist'} should be the data folder, but it is a file"
    monkeypatch.setenv("MLPSPEC_HOME", str(home))
    monkeypatch.setenv("MLPSPEC_MIRRORS", str(tmp_path / "no-mirror"))
    output = fails_with(f"error: MLPSPEC_HOME={home}: {expected}", *command)
    assert "every mirror failed" not in output


def test_folder_in_place_of_a_cached_file(tmp_path, monkeypatch):
    cached = tmp_path / "datasets" / "mnist" / "train-images-idx3-ubyte"
    cached.mkdir(parents=True)
    monkeypatch.setenv("MLPSPEC_HOME", str(tmp_path))
    monkeypatch.setenv("MLPSPEC_MIRRORS", str(tmp_path / "no-mirror"))
    fails_with(f"error: {cached}: expected a cached data file, found a folder; remove it",
               "data", "info", "mnist")


# ---------------------------------------------------------------- 2. full disk


def _cli_with_file_size_limit(limit: int, *args, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run the CLI in a process that may write no file larger than `limit` bytes.

    A write past the limit fails with EFBIG ("File too large") as a full disk
    fails with ENOSPC: the same OSError path, without mounting anything.
    """

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-c", "from mlpspec.cli import app; app()", *args],
                          preexec_fn=limit_file_size, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


def _cache_state(root: Path) -> dict[str, list[str]]:
    """stage -> keys of the entries in the cache; every one must verify."""
    entries = list(Cache(root).entries())
    for entry in entries:
        assert verify(entry) is None, (entry.stage, verify(entry))
    assert not any((root / "tmp").iterdir()), "a half-written entry was left behind"
    state: dict[str, list[str]] = {}
    for entry in entries:
        state.setdefault(entry.stage, []).append(entry.key)
    return state


@pytest.mark.skipif(resource is None, reason="needs RLIMIT_FSIZE")
def test_full_cache_disk_is_a_message_and_keeps_finished_stages(tiny):
    # 8 KB: every array and JSON file of this tiny run fits, the evaluation's
    # pictures do not, so the disk "fills up" in the evaluate stage.
    cache = tiny / "cache"
    failed = _cli_with_file_size_limit(8000, "run", "spec.toml", "--cache-dir", "cache",
                                       "--out", "out", cwd=tiny)
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr + failed.stdout
    assert "error: cache: cannot write to the cache folder: File too large" in failed.stderr
    assert not (tiny / "out").exists()
    assert sorted(_cache_state(cache)) == ["load", "preprocess", "train"]

    # With room again, the finished stages are reused and the result is a clean run's.
    again = invoke("run", tiny / "spec.toml", "--cache-dir", cache, "--out", tiny / "out", "--json")
    fresh = invoke("run", tiny / "spec.toml", "--cache-dir", tiny / "fresh", "--out", tiny / "out2",
                   "--json")
    assert again.exit_code == 0 and fresh.exit_code == 0, again.output + fresh.output
    import json

    resumed, clean = json.loads(again.stdout), json.loads(fresh.stdout)
    assert {s["stage"]: s["status"] for s in resumed["stages"]} == {
        "load": "cached", "preprocess": "cached", "train": "cached", "evaluate": "ran",
        "export": "ran"}
    assert resumed["test"] == clean["test"] and resumed["validation"] == clean["validation"]
    assert (tiny / "out" / "model.mlpm").read_bytes() == (tiny / "out2" / "model.mlpm").read_bytes()
    assert sorted(_cache_state(cache)) == ["evaluate", "export", "load", "preprocess", "train"]


@pytest.mark.skipif(resource is None, reason="needs RLIMIT_FSIZE")
def test_full_disk_inside_an_array_never_stores_a_truncated_entry(tiny):
    # 2000 bytes: x_train.npy of the load stage (2048 bytes) is cut short.
    failed = _cli_with_file_size_limit(2000, "run", "spec.toml", "--cache-dir", "cache",
                                       "--out", "out", cwd=tiny)
    assert "Traceback" not in failed.stderr + failed.stdout
    assert failed.returncode == 2, failed.stderr
    assert "File too large" in failed.stderr
    assert _cache_state(tiny / "cache") == {}


@pytest.mark.skipif(resource is None, reason="needs RLIMIT_FSIZE")
def test_full_data_home_names_mlpspec_home_not_the_mirror(tmp_path):
    mirror = mnist_mirror()
    if mirror is None:
        pytest.skip("the local MNIST copy (../shared/data/mnist) is not available")
    home = tmp_path / "home"
    result = _cli_with_file_size_limit(1 << 20, "data", "fetch", "mnist",
                                       env={"MLPSPEC_HOME": str(home), "MLPSPEC_MIRRORS": str(mirror)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    dest = home / "datasets" / "mnist" / "train-images-idx3-ubyte"
    assert f"error: MLPSPEC_HOME={home}: cannot write {dest}: File too large" in result.stderr
    assert "every mirror failed" not in result.stderr
    assert list(dest.parent.iterdir()) == []  # no partial download left


# ---------------------------------------------------------------- 3. deep nesting


DEEP = 500
HEAD = 'spec_version = 1\nname = "deep"\n'


@pytest.mark.parametrize("body, where", [
    ("seed = " + "[" * DEEP + "]" * DEEP, ""),
    ("seed = " + "{ a = " * DEEP + "1" + " }" * DEEP, ""),
    ("seed = " + "[" * 150 + "]" * 150, "seed: "),  # tomllib copes; mlpspec refuses
    (".".join(["deep"] * DEEP) + " = 1", "deep: "),
    ("[" + ".".join(["deep"] * DEEP) + "]", "deep: "),
], ids=["arrays", "inline-tables", "arrays-150", "dotted-key", "table-header"])
def test_spec_nested_too_deeply(tmp_path, body, where):
    spec = tmp_path / "deep.toml"
    spec.write_text(HEAD + body + "\n")
    fails_with(f"{spec}: {where}nested too deeply: more than 100 levels of tables and arrays",
               "validate", spec)


@pytest.mark.parametrize("override, message", [
    ("seed=" + "[" * DEEP + "]" * DEEP, "value nested too deeply"),
    ("seed=" + "[" * 150 + "]" * 150, "value nested too deeply"),
    ("train." + ".".join(["deep"] * DEEP) + "=1", "key path nested too deeply"),
], ids=["value", "value-150", "key-path"])
def test_override_nested_too_deeply(override, message):
    output = fails_with(f"--set {override}: {message}: more than 100 levels",
                        "validate", SPECS / "mnist.toml", "--set", override)
    assert output.startswith("error: the spec has 1 problem:")


# ---------------------------------------------------------------- 4. many problems


def test_twenty_thousand_unknown_keys_list_fifty_and_count_the_rest(tmp_path):
    spec = tmp_path / "many.toml"
    text = (SPECS / "mnist-fast.toml").read_text()
    unknown = "".join(f"epochz_{i} = 1\n" for i in range(20_000))
    spec.write_text(text.replace("[train]\n", "[train]\n" + unknown, 1))
    output = fails_with("error: the spec has 20000 problems:", "validate", spec)
    listed = [line for line in output.splitlines() if line.startswith(f"  {spec}: ")]
    assert len(listed) == 50
    assert listed[0] == f"  {spec}: train.epochz_0: unknown key; did you mean 'epochs'?"
    assert output.rstrip().endswith("  ... and 19950 more (only the first 50 are listed)")


# ---------------------------------------------------------------- 5. BOM


def test_spec_with_a_utf8_bom_is_valid(tmp_path):
    spec = tmp_path / "bom.toml"
    spec.write_bytes(b"\xef\xbb\xbf" + (SPECS / "mnist.toml").read_bytes())
    result = invoke("validate", spec)
    assert result.exit_code == 0, result.output
    assert invoke("render", spec).output == invoke("render", SPECS / "mnist.toml").output


# ---------------------------------------------------------------- 6. CSV header


@pytest.mark.parametrize("header, names", [("label,a", 2), ("label,a,b,c", 4)])
def test_csv_header_must_match_the_rows(tmp_path, header, names):
    rows = "0,1,2\n1,3,4\n2,5,6\n"
    (tmp_path / "train.csv").write_text(f"{header}\n{rows}")
    (tmp_path / "test.csv").write_text(f"label,a,b\n{rows}")
    spec = tmp_path / "spec.toml"
    spec.write_text('spec_version = 1\nname = "csv"\n[data]\nsource = "csv"\n'
                    'train = "train.csv"\ntest = "test.csv"\nclasses = 3\nheader = true\n'
                    '[network]\ninputs = 2\n[[network.layers]]\ntype = "dense.v1"\nunits = 3\n[train]\nepochs = 1\n')
    fails_with(f"error: data.train: {tmp_path / 'train.csv'}: line 2: expected {names} columns "
               f"as in the header on line 1 (data.header = true), found 3",
               "data", "info", spec)


# ---------------------------------------------------------------- 7. gzip IDX bombs


def _idx_spec(folder: Path, images: bytes) -> Path:
    (folder / "images-idx3-ubyte.gz").write_bytes(images)
    labels = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(range(10))
    (folder / "labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    spec = folder / "spec.toml"
    spec.write_text('spec_version = 1\nname = "idx"\n[data]\nsource = "idx"\n'
                    'train_images = "images-idx3-ubyte.gz"\ntrain_labels = "labels-idx1-ubyte.gz"\n'
                    'test_images = "images-idx3-ubyte.gz"\ntest_labels = "labels-idx1-ubyte.gz"\n'
                    'classes = 10\n[network]\ninputs = 784\n'
                    '[[network.layers]]\ntype = "dense.v1"\nunits = 10\n[train]\nepochs = 1\n')
    return spec


def _gzip_idx(dims: tuple[int, ...], zero_bytes: int) -> bytes:
    """A gzip IDX file: a uint8 header declaring `dims`, then `zero_bytes` zeros."""
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(header)]
    block = bytes(1 << 20)
    for start in range(0, zero_bytes, len(block)):
        parts.append(compressor.compress(block[: zero_bytes - start]))
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.mark.parametrize("dims, zeros, message, peak_mb", [
    # ~100 KB on disk, 100 MB inflated, the header declares 47 MB: refused at 47 MB.
    ((60000, 28, 28), 100 << 20,
     "header declares 60000x28x28 uint8 (47040000 bytes) but the gzip stream holds more", 60),
    # The header claims far more than the stream holds: nothing big is ever allocated.
    ((60000, 28, 28), 1000,
     "header declares 60000x28x28 uint8 (47040000 bytes) but only 1000 bytes follow", 4),
    # A header beyond any real dataset is refused before inflating anything.
    ((1 << 20, 1 << 20, 16), 100 << 20, "more than the 4294967296 bytes mlpspec reads", 4),
], ids=["bomb", "short", "huge-header"])
def test_gzip_idx_is_checked_against_its_header_while_inflating(tmp_path, dims, zeros, message,
                                                                 peak_mb):
    spec = _idx_spec(tmp_path, _gzip_idx(dims, zeros))
    tracemalloc.start()
    try:
        output = fails_with(message, "data", "info", spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"data.train_images: {tmp_path / 'images-idx3-ubyte.gz'}: " in output
    assert peak < peak_mb << 20, f"peak {peak / 2**20:.1f} MB"


# ---------------------------------------------------------------- 8. other paths


def test_other_file_system_errors_are_messages(tiny, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    fails_with(f"{folder}: cannot read the file: Is a directory", "validate", folder)
    fails_with("is neither a built-in dataset", "data", "info", folder)
    fails_with(f"{a_file}: cannot use the cache folder", "run", tiny / "spec.toml",
               "--cache-dir", a_file)
    fails_with(f"{a_file}: the cache folder is not a folder", "cache", "ls", "--cache-dir", a_file)
    fails_with(f"--out {a_file / 'run'}: {a_file} is not a folder", "run", tiny / "spec.toml",
               "--cache-dir", tiny / "cache", "--out", a_file / "run")
    if Path("/proc/self").is_dir():
        fails_with("cannot create the run folder", "run", tiny / "spec.toml", "--cache-dir",
                   tiny / "cache", "--out", "/proc/self/no/run")


def test_invalid_mirror_url_is_one_failed_mirror(tmp_path):
    remote = RemoteFile("f", "0" * 64, 1)
    with pytest.raises(DownloadError, match=r"http://\[::1: not a valid URL"):
        fetch_file(remote, ["http://[::1"], tmp_path)


def test_closed_output_is_a_message():
    process = subprocess.Popen(
        [sys.executable, "-c", "from mlpspec.cli import app; app()", "render", SPECS / "mnist.toml"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader goes away before anything is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 2, stderr
    assert "error: the output was closed before everything was written" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("damage", [{"files": ["x.npy"]}, {"created": "yesterday"},
                                    {"files": {"x.npy": {"size": "big", "sha256": "0"}}}])
def test_a_hand_edited_manifest_is_no_entry(tiny, damage):
    cache = tiny / "cache"
    invoke("run", tiny / "spec.toml", "--cache-dir", cache, "--out", tiny / "out")
    manifest = next(cache.glob("load/*/manifest.json"))
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **damage}))
    listed = invoke("cache", "ls", "--cache-dir", cache)
    assert listed.exit_code == 0 and "4 entries" in listed.output, listed.output
    again = invoke("run", tiny / "spec.toml", "--cache-dir", cache, "--out", tiny / "out")
    assert again.exit_code == 0, again.output
