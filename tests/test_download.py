"""Fetching into the verified cache: mirror fallback, failures, cache reuse.

Everything runs against a local HTTP server on 127.0.0.1, file:// URLs and
plain directories; nothing here reaches the internet.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest_data import (  # noqa: F401  (fixtures)
    MNIST_LABEL_FILES,
    Route,
    cache_home,
    mirror_server,
    mnist_dir,
    requires_mnist,
    synthetic_file,
    tiny_images,
)

from mlpspec.data import sources
from mlpspec.data.download import data_home, env_mirrors, fetch_dataset, fetch_file, mirror_order
from mlpspec.data.idx import read_idx_file
from mlpspec.data.sources import BuiltinDataset, RemoteFile
from mlpspec.errors import DataError, DownloadError

FILE = synthetic_file("tiny-images-idx3-ubyte", tiny_images())


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name != FILE.remote.filename)


def test_data_home_and_env_mirrors(monkeypatch, tmp_path):
    monkeypatch.delenv("MLPSPEC_HOME", raising=False)
    assert str(data_home()).endswith(".cache/mlpspec")
    monkeypatch.setenv("MLPSPEC_HOME", str(tmp_path))
    assert data_home() == tmp_path
    monkeypatch.setenv("MLPSPEC_MIRRORS", " file:///a/b/ ,http://h:8/x;/plain/dir\nC:\\data ")
    assert env_mirrors() == ["file:///a/b/", "http://h:8/x", "/plain/dir", "C:\\data"]
    monkeypatch.delenv("MLPSPEC_MIRRORS")
    assert env_mirrors() == []


def test_mirror_order_env_then_spec_then_defaults(monkeypatch):
    monkeypatch.setenv("MLPSPEC_MIRRORS", "http://env1/ http://env2/")
    order = mirror_order(sources.MNIST, ["http://spec/", "http://env2/"])
    assert order == ["http://env1/", "http://env2/", "http://spec/", *sources.MNIST.mirrors]


def test_good_http_mirror(mirror_server, tmp_path):
    mirror_server.serve("good", FILE.remote.filename + ".gz", Route(FILE.gz))
    path = fetch_file(FILE.remote, [mirror_server.url("good")], tmp_path)
    assert path == tmp_path / FILE.remote.filename
    assert path.read_bytes() == FILE.raw  # cached decompressed
    np.testing.assert_array_equal(read_idx_file(path), tiny_images())
    assert _leftovers(tmp_path) == []


def test_raw_file_when_no_gz(mirror_server, tmp_path):
    mirror_server.serve("raw", FILE.remote.filename, Route(FILE.raw))
    path = fetch_file(FILE.remote, [mirror_server.url("raw")], tmp_path)
    assert path.read_bytes() == FILE.raw
    assert mirror_server.hits == {f"/raw/{FILE.remote.filename}.gz": 1, f"/raw/{FILE.remote.filename}": 1}


def test_fallback_order_and_no_temp_files(mirror_server, tmp_path):
    name = FILE.remote.filename
    mirror_server.serve("corrupt", name + ".gz", Route(synthetic_file(name, tiny_images(seed=1)).gz))
    mirror_server.serve("short", name + ".gz", Route(FILE.gz[:40], declared_length=len(FILE.gz)))
    mirror_server.serve("good", name + ".gz", Route(FILE.gz))
    mirrors = [mirror_server.url(m) for m in ("missing", "corrupt", "short", "good", "unused")]
    log = []

    path = fetch_file(FILE.remote, mirrors, tmp_path, log=log.append)

    assert path.read_bytes() == FILE.raw
    assert log == [
        f"fetching {mirrors[0]}{name}.gz",
        f"fetching {mirrors[0]}{name}",
        f"fetching {mirrors[1]}{name}.gz",
        f"fetching {mirrors[1]}{name}",
        f"fetching {mirrors[2]}{name}.gz",
        f"fetching {mirrors[2]}{name}",
        f"fetching {mirrors[3]}{name}.gz",
    ]
    assert not any(p.startswith("/unused") for p in mirror_server.hits)
    assert _leftovers(tmp_path) == []


def test_all_mirrors_fail_lists_each_url_and_reason(mirror_server, tmp_path):
    name = FILE.remote.filename
    wrong = synthetic_file(name, tiny_images(seed=1))
    mirror_server.serve("corrupt", name + ".gz", Route(wrong.gz))
    mirror_server.serve("short", name + ".gz", Route(FILE.gz[:40], declared_length=len(FILE.gz)))
    mirror_server.serve("short", name, Route(FILE.raw[:40], declared_length=len(FILE.raw)))
    mirror_server.serve("big", name, Route(FILE.raw + b"extra"))
    mirror_server.serve("slow", name + ".gz", Route(FILE.gz, delay=1.0))
    urls = {m: mirror_server.url(m) for m in ("missing", "corrupt", "short", "big", "slow")}
    mirrors = [*urls.values(), "ftp://example.org/x/", str(tmp_path / "nodir")]
    dest = tmp_path / "cache"

    with pytest.raises(DownloadError) as info:
        fetch_file(FILE.remote, mirrors, dest, timeout=0.3)

    lines = str(info.value).splitlines()
    assert lines[0] == f"{name}: every mirror failed:"
    expected = [
        f"{urls['missing']}{name}.gz: HTTP 404 Not Found",
        f"{urls['missing']}{name}: HTTP 404 Not Found",
        f"{urls['corrupt']}{name}.gz: sha256 mismatch: expected {FILE.remote.sha256}, found {wrong.remote.sha256}",
        f"{urls['corrupt']}{name}: HTTP 404 Not Found",
        f"{urls['short']}{name}.gz: transfer truncated: received 40 of {len(FILE.gz)} bytes",
        f"{urls['short']}{name}: transfer truncated: received 40 of {len(FILE.raw)} bytes",
        f"{urls['big']}{name}.gz: HTTP 404 Not Found",
        f"{urls['big']}{name}: payload exceeds the expected {FILE.remote.size} bytes",
        f"{urls['slow']}{name}.gz: timed out after 0.3 s",
        f"{urls['slow']}{name}: HTTP 404 Not Found",
        "ftp://example.org/x/: unsupported mirror scheme 'ftp' (use http, https, file or a directory)",
        f"{tmp_path / 'nodir' / name}.gz: No such file or directory",
        f"{tmp_path / 'nodir' / name}: No such file or directory",
    ]
    assert lines[1:] == ["  " + line for line in expected]
    assert list(dest.iterdir()) == []


def test_truncated_gzip_stream_without_content_length(tmp_path):
    name = FILE.remote.filename
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"{name}.gz").write_bytes(FILE.gz[:-12])
    with pytest.raises(DownloadError, match=r"\.gz: gzip stream is truncated"):
        fetch_file(FILE.remote, [str(mirror)], tmp_path / "cache")


def test_verified_file_is_not_refetched(mirror_server, tmp_path):
    mirror_server.serve("m", FILE.remote.filename + ".gz", Route(FILE.gz))
    fetch_file(FILE.remote, [mirror_server.url("m")], tmp_path)
    fetch_file(FILE.remote, [mirror_server.url("m")], tmp_path)
    assert sum(mirror_server.hits.values()) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_cache_is_refetched(mirror_server, tmp_path, damage):
    mirror_server.serve("m", FILE.remote.filename + ".gz", Route(FILE.gz))
    path = fetch_file(FILE.remote, [mirror_server.url("m")], tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-1] ^= 1
    else:
        del data[-1]
    path.write_bytes(bytes(data))
    log = []

    fetch_file(FILE.remote, [mirror_server.url("m")], tmp_path, log=log.append)

    assert path.read_bytes() == FILE.raw
    assert sum(mirror_server.hits.values()) == 2
    assert "cached file is corrupt" in log[0]


def test_file_url_and_directory_mirrors(tmp_path):
    gz_dir = tmp_path / "gz dir"  # a space, to exercise URL quoting
    gz_dir.mkdir()
    (gz_dir / f"{FILE.remote.filename}.gz").write_bytes(FILE.gz)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / FILE.remote.filename).write_bytes(FILE.raw)

    via_url = fetch_file(FILE.remote, [gz_dir.as_uri()], tmp_path / "a")
    via_dir = fetch_file(FILE.remote, [str(raw_dir)], tmp_path / "b")

    assert via_url.read_bytes() == via_dir.read_bytes() == FILE.raw


def test_fetch_dataset_env_mirrors_first(mirror_server, cache_home, monkeypatch):
    files = {
        role: synthetic_file(f"tiny-{role}", tiny_images(seed=k))
        for k, role in enumerate(sources.ROLES)
    }
    tiny = BuiltinDataset(
        name="tiny",
        files={role: f.remote for role, f in files.items()},
        mirrors=(mirror_server.url("default"),),
        classes=2,
        image_shape=(4, 4),
        class_names=("a", "b"),
    )
    monkeypatch.setitem(sources.BUILTIN_DATASETS, "tiny", tiny)
    for prefix in ("env", "spec", "default"):
        for f in files.values():
            mirror_server.serve(prefix, f.remote.filename + ".gz", Route(f.gz))
    monkeypatch.setenv("MLPSPEC_MIRRORS", f"{mirror_server.url('nothing')}, {mirror_server.url('env')}")

    paths = fetch_dataset("tiny", [mirror_server.url("spec")])

    assert {role: p.read_bytes() for role, p in paths.items()} == {r: f.raw for r, f in files.items()}
    assert all(p.parent == cache_home / "datasets" / "tiny" for p in paths.values())
    assert {path.split("/")[1] for path in mirror_server.hits} == {"nothing", "env"}

    monkeypatch.delenv("MLPSPEC_MIRRORS")
    (cache_home / "datasets" / "tiny" / "tiny-test_labels").unlink()
    fetch_dataset("tiny", [mirror_server.url("spec")])
    assert mirror_server.hits["/spec/tiny-test_labels.gz"] == 1
    assert mirror_server.hits["/default/tiny-test_labels.gz"] == 0


@requires_mnist
def test_real_mnist_labels_over_http(mirror_server, tmp_path):
    for name in MNIST_LABEL_FILES:
        mirror_server.serve("mnist", name + ".gz", Route((mnist_dir() / f"{name}.gz").read_bytes()))
    for role in ("train_labels", "test_labels"):
        remote = sources.MNIST.files[role]
        path = fetch_file(remote, [mirror_server.url("mnist")], tmp_path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == remote.sha256
        labels = read_idx_file(path)
        assert labels.shape == (remote.size - 8,) and labels.max() == 9


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown built-in dataset 'cifar' \\(known: fashion-mnist, mnist\\)"):
        fetch_dataset("cifar")


def test_remote_file_sizes_match_mnist_layout():
    for dataset in sources.BUILTIN_DATASETS.values():
        assert [f.size for f in dataset.files.values()] == [47040016, 60008, 7840016, 10008]
        assert all(len(f.sha256) == 64 for f in dataset.files.values())
        assert len(dataset.class_names) == dataset.classes
    with pytest.raises(ValueError, match="roles"):
        BuiltinDataset("x", {"train_images": RemoteFile("a", "0" * 64, 1)}, (), 2, (1, 1), ("a", "b"))
