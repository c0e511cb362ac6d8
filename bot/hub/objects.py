"""Content-addressed file contents shared by all repos (identical bytes are stored once).

    objects/git/ab/cdef...   regular file contents, keyed by git blob sha1
    objects/lfs/ab/cdef...   LFS contents, keyed by sha256
    tmp/                     deleted repos on their way out

Every object is written through `engine.formats.fsio.atomic_output` (temp name beside the object,
fsync, rename, directory fsync), so an object path holds complete, verified bytes or nothing.
`durable=False` skips the syncs: only bulk seeding for tests and benchmarks asks for that.
Writers of the same object take its lock first, because the temp name beside an object is
the same for every thread of the process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.hub.model import HEX64, FileEntry, git_blob_sha1, lfs_pointer
from engine.formats.fsio import atomic_write_bytes


class KeyedLocks:
    """One lock per key, created on demand and dropped when nobody holds or waits for it.

    `acquire` blocks, so async callers run it in a worker thread; the returned callable
    releases from any thread (a plain Lock, not an RLock)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def acquire(self, key: str) -> Callable[[], None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        lock.acquire()

        def release() -> None:
            lock.release()
            with self._guard:
                _, n = self._locks[key]
                if n <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, n - 1)

        return release

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        release = self.acquire(key)
        try:
            yield
        finally:
            release()


class ObjectStore:
    def __init__(self, root: Path, *, durable: bool = True):
        self.root = root
        self.durable = durable
        self.locks = KeyedLocks()
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._sweep()

    def _sweep(self) -> None:
        """Remove what a crashed server left: deleted repos in tmp/ and half-written objects
        (fsio temp names start with a dot); neither is ever adopted."""
        for stale in self.tmp.iterdir():
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        for kind in ("git", "lfs"):
            base = self.root / "objects" / kind
            if not base.is_dir():
                continue
            for shard in os.scandir(base):
                if shard.is_dir():
                    for entry in os.scandir(shard.path):
                        if entry.name.startswith("."):
                            Path(entry.path).unlink(missing_ok=True)

    def git_path(self, sha1: str) -> Path:
        return self.root / "objects" / "git" / sha1[:2] / sha1[2:]

    def lfs_path(self, sha256: str) -> Path:
        return self.root / "objects" / "lfs" / sha256[:2] / sha256[2:]

    def path_for(self, entry: FileEntry) -> Path:
        return self.lfs_path(entry.sha256) if entry.sha256 else self.git_path(entry.oid)

    def put_regular(self, data: bytes) -> FileEntry:
        oid = git_blob_sha1(data)
        path = self.git_path(oid)
        if not path.exists():
            with self.locks.hold(oid):
                if not path.exists():
                    atomic_write_bytes(path, data, fsync=self.durable)
        return FileEntry(oid, len(data))

    def put_lfs(self, data: bytes) -> FileEntry:
        """Store bytes as an LFS object directly (bulk seeding; HTTP uploads stream)."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.lfs_path(sha256)
        if self.lfs_size(sha256) != len(data):
            with self.locks.hold(sha256):
                if self.lfs_size(sha256) != len(data):
                    atomic_write_bytes(path, data, fsync=self.durable)
        return lfs_entry(sha256, len(data))

    def read_regular(self, oid: str) -> bytes:
        return self.git_path(oid).read_bytes()

    def lfs_size(self, sha256: str) -> int | None:
        """Size of a stored LFS object, or None if it was never (fully) uploaded."""
        if not HEX64.match(sha256):
            return None
        try:
            return self.lfs_path(sha256).stat().st_size
        except FileNotFoundError:
            return None


def lfs_entry(sha256: str, size: int) -> FileEntry:
    """The tree entry of an LFS file: listed under the git sha1 of its pointer file."""
    return FileEntry(git_blob_sha1(lfs_pointer(sha256, size)), size, sha256)
