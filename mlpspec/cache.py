"""A content-addressed store for stage artifacts.

    cache = Cache(root)
    key = stage_key("train", version=1, reads={...}, consumes={"preprocess": "ab12..."})
    entry = cache.get("train", key)          # None on a miss or a corrupted entry
    entry = cache.put("train", key, write)   # write(folder) fills a fresh folder

Layout: `<root>/<stage>/<key>/` holds the artifact files and `manifest.json`
(stage, key, creation time, what the stage read, and the size and sha256 of
every file). An entry is written into `<root>/tmp/` under a name that
carries its writer's host and pid (`mlpspec.atomic`) and renamed into place
only when complete, so a run killed at any moment never leaves a
half-written entry that a later run trusts. Two runs that compute the same
entry at once both finish: the second rename fails, and the second run
discards its copy and uses the first. A corrupted entry (a file changed or
missing) fails verification and is removed, then recomputed.

Interrupted training keeps its checkpoint in `<root>/checkpoints/<train key>/`.
What killed runs leave in `tmp/` and `checkpoints/` is stale once its owner
process is gone: `tidy` (run before every write) removes it, `stale` reports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from mlpspec import atomic
from mlpspec.errors import MlpspecError

MANIFEST = "manifest.json"
CACHE_ENV = "MLPSPEC_CACHE"
DEFAULT_CACHE = Path(".mlpspec") / "cache"


class CacheError(MlpspecError):
    """The cache folder cannot be used (not writable, not a folder)."""


def default_cache_dir() -> Path:
    """`MLPSPEC_CACHE`, else `.mlpspec/cache` in the working directory."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, floats by repr (exact round-trip)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def stage_key(stage: str, *, version: int, reads: Mapping[str, Any],
              consumes: Mapping[str, str], checksums: Mapping[str, str] | None = None) -> str:
    """The cache key of a stage: a sha256 over everything that determines its output."""
    payload = {"stage": stage, "version": version, "reads": reads, "consumes": dict(consumes),
               "checksums": dict(checksums or {})}
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@attrs.frozen
class Entry:
    """A verified cache entry: its folder and its manifest."""

    stage: str
    key: str
    path: Path
    manifest: Mapping[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def created(self) -> float:
        return float(self.manifest.get("created", 0.0))

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.manifest.get("files", {}).values())


class Cache:
    """The store under `root`; see the module docstring for its guarantees."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def ensure_usable(self) -> Path:
        """Create the cache folder if needed; its `tmp/` folder, or a `CacheError`."""
        tmp_root = self.root / "tmp"
        try:
            tmp_root.mkdir(parents=True, exist_ok=True)
            # Named as ours, so a concurrent `tidy` never takes it for a leftover.
            probe = atomic.temporary_path(tmp_root / "probe")
            probe.touch(exist_ok=False)
            probe.unlink()
        except OSError as error:
            raise CacheError(f"{self.root}: cannot use the cache folder: "
                             f"{error.strerror or error}") from None
        return tmp_root

    def entry_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def checkpoint_dir(self, train_key: str) -> Path:
        """Where interrupted training with this key keeps its checkpoint."""
        return self.root / "checkpoints" / train_key

    def stale(self) -> list[Path]:
        """Temporaries left in `tmp/` and `checkpoints/` by processes that are gone."""
        return atomic.stale(self.root / "checkpoints") + self._stale_in_tmp()

    def stale_size(self) -> tuple[int, int]:
        """`(count, bytes)` of the stale temporaries."""
        found = self.stale()
        return len(found), sum(atomic.size_of(path) for path in found)

    def tidy(self) -> tuple[int, int]:
        """Remove stale temporaries (restoring a checkpoint a kill left set aside); (count, bytes)."""
        count, freed = atomic.tidy(self.root / "checkpoints")
        for path in self._stale_in_tmp():
            size = atomic.size_of(path)
            atomic.remove(path)
            count, freed = count + 1, freed + size
        return count, freed

    def _stale_in_tmp(self) -> list[Path]:
        # Names that carry no owner (written by mlpspec versions before owners
        # were recorded) count as stale too: `tmp/` is mlpspec's own.
        tmp_root = self.root / "tmp"
        if not tmp_root.is_dir():
            return []
        return [p for p in sorted(tmp_root.iterdir()) if atomic.is_stale(p) is not False]

    def peek(self, stage: str, key: str) -> Entry | None:
        """The entry if its manifest is present and readable, without hashing its files."""
        folder = self.entry_dir(stage, key)
        manifest = _read_manifest(folder)
        if manifest is None or manifest.get("key") != key or manifest.get("stage") != stage:
            return None
        return Entry(stage, key, folder, manifest)

    def get(self, stage: str, key: str) -> Entry | None:
        """The verified entry, or None; a corrupted entry is removed."""
        entry = self.peek(stage, key)
        if entry is None:
            if self.entry_dir(stage, key).exists():
                self._discard(self.entry_dir(stage, key))
            return None
        if verify(entry) is not None:
            self._discard(entry.path)
            return None
        return entry

    def put(self, stage: str, key: str, write: Callable[[Path], Mapping[str, Any] | None],
            info: Mapping[str, Any] | None = None) -> Entry:
        """Create the entry: `write(folder)` writes the artifacts into a fresh folder.

        `write` may return extra manifest fields; `info` is stored as is (what
        the stage read, for `cache explain`).
        """
        tmp_root = self.ensure_usable()
        self.tidy()
        folder = atomic.temporary_path(tmp_root / stage)
        folder.mkdir()
        try:
            extra = write(folder) or {}
            files = {}
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    name = path.relative_to(folder).as_posix()
                    files[name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
            manifest = {"stage": stage, "key": key, "created": time.time(), "files": files,
                        **dict(info or {}), **dict(extra)}
            _write_json(folder / MANIFEST, manifest)
            target = self.entry_dir(stage, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(folder, target)
            except OSError:
                # Someone else finished the same entry first (or a broken one
                # sits there): keep a verified one, else replace it.
                existing = self.get(stage, key)
                if existing is not None:
                    return existing
                atomic.swap_in(folder, target)
        finally:
            if folder.exists():
                atomic.remove(folder)
        return Entry(stage, key, target, manifest)

    def entries(self) -> Iterator[Entry]:
        """Every entry with a readable manifest (unverified), oldest first."""
        found = []
        if self.root.exists() and not self.root.is_dir():
            raise CacheError(f"{self.root}: the cache folder is not a folder")
        if self.root.is_dir():
            for stage_dir in self.root.iterdir():
                if not stage_dir.is_dir() or stage_dir.name in ("tmp", "checkpoints"):
                    continue
                for folder in stage_dir.iterdir():
                    entry = self.peek(stage_dir.name, folder.name)
                    if entry is not None:
                        found.append(entry)
        return iter(sorted(found, key=lambda e: e.created))

    def latest(self, stage: str, where: Callable[[Entry], bool]) -> Entry | None:
        """The newest entry of `stage` matching `where`."""
        matching = [e for e in self.entries() if e.stage == stage and where(e)]
        return matching[-1] if matching else None

    def clear(self, older_than_days: float | None = None) -> tuple[int, int]:
        """Remove entries (all, or those older than the given days); (count, bytes) freed.

        Clearing all also removes the checkpoints of interrupted training.
        Temporaries are not entries: see `tidy`.
        """
        now, count, freed = time.time(), 0, 0
        for entry in list(self.entries()):
            if older_than_days is None or now - entry.created > older_than_days * 86400:
                freed += entry.size
                count += 1
                self._discard(entry.path)
        checkpoints = self.root / "checkpoints"
        if older_than_days is None and checkpoints.is_dir():
            for folder in checkpoints.iterdir():
                # A live process's staging folder is its own business.
                if atomic.is_stale(folder) is not False:
                    atomic.remove(folder)
        return count, freed

    def discard(self, stage: str, key: str) -> None:
        """Remove an entry if present."""
        if self.entry_dir(stage, key).exists():
            self._discard(self.entry_dir(stage, key))

    def _discard(self, folder: Path) -> None:
        # Rename first so that a reader never sees a half-deleted entry.
        trash = atomic.temporary_path(self.root / "tmp" / "trash")
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, trash)
        except OSError:
            return
        atomic.remove(trash)


def verify(entry: Entry) -> str | None:
    """None when every file matches its manifest; otherwise what is wrong."""
    for name, expected in entry.manifest.get("files", {}).items():
        path = entry.path / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != expected["size"]:
            return f"{name} has {size} bytes, expected {expected['size']}"
        if file_sha256(path) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if _well_formed(manifest) else None


def _well_formed(manifest: Any) -> bool:
    """A manifest as `put` writes it; anything else (edited by hand, damaged) is no entry."""
    if not isinstance(manifest, dict):
        return False
    created, files = manifest.get("created", 0.0), manifest.get("files", {})
    if isinstance(created, bool) or not isinstance(created, (int, float)) or not isinstance(files, dict):
        return False
    return all(isinstance(info, dict) and type(info.get("size")) is int
               and isinstance(info.get("sha256"), str) for info in files.values())


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True, allow_nan=False))
