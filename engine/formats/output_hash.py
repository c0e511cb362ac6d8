"""sha256 of an output file, computed from the bytes that go into it while it is written.

Why: every artifact's sha256 goes into manifest.json. Hashing a 1.7 GB output after writing it
costs ~1.3 s of one core after the copy is done (SHA-256 runs at ~1.3 GB/s here, with the CPU's
SHA extensions), as long as the copy itself. The writers know every byte they put in the file,
in order: encoded headers, arrays written from user space, and byte ranges of source files that
the kernel copies (`copy_file_range`) without them passing through user space. Hashing those
pieces on a second core while the copy runs gives the same digest (the same bytes, in the same
order) and takes the hash off the critical path.

A copied range is hashed from the source file, so a source that changed during the write would
make the two differ: `SourceStamps` records each source file's identity (device, inode, size,
modification and change times) before the write, and the writers hash the finished file itself
when any of them moved (tests/engine/formats/test_streaming_hash.py proves the digests against a
hash of the written file, for copied, cast and quantized tensors).

Ranges are read through a sliding read-only memory map (no copy into a buffer: ~15% faster than
`preadv` into one, measured) of `_WINDOW` bytes, so the pages mapped at any time, and with them
the resident set, stay small. hashlib releases the GIL on large updates, so the hashing thread
runs beside the writer's `os.write` / `copy_file_range` calls.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_READ_CHUNK = 8 * 1024 * 1024  # sha256_file: bytes per read
_WINDOW = 32 * 1024 * 1024  # bytes of a source file mapped at a time
# Bytes of written data (arrays, headers) queued for hashing at most; the writer waits beyond.
# Ranges cost nothing here: the hashing thread reads them itself.
_MAX_PENDING = 64 * 1024 * 1024

log = logging.getLogger("unetbot.engine")


def sha256_file(path: Path, chunk: int = _READ_CHUNK) -> str:
    """sha256 of a whole file, read from disk (or the page cache)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hash_range(digest: Any, path: Path, offset: int, length: int) -> None:
    """Feed `length` bytes of `path` from `offset` to `digest`, through a sliding memory map."""
    if length == 0:
        return
    with open(path, "rb") as f:
        end = offset + length
        if os.fstat(f.fileno()).st_size < end:
            raise ValueError(f"{path}: {end} bytes needed, the file is shorter")
        position = offset
        while position < end:
            start = position - position % mmap.ALLOCATIONGRANULARITY
            size = min(_WINDOW, end - start)
            with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ, offset=start) as window:
                view = memoryview(window)
                try:
                    digest.update(view[position - start : size])
                finally:
                    view.release()
            position = start + size


@dataclass(frozen=True)
class _Range:
    path: Path
    offset: int
    length: int


_END = object()


class OutputHash:
    """sha256 of pieces fed in file order, computed on a worker thread.

    `add(data)` queues written bytes (kept by reference until hashed: the caller must not change
    them afterwards, which holds for the writers' fresh arrays and bytes); `add_range` queues a
    byte range of a file to hash from that file. `hexdigest()` waits for the queue and returns
    the digest, or None when hashing failed (a source range unreadable): the streamed digest is
    only a shortcut, so a failure never fails the write, the writer hashes its file instead.
    `close()` drops the work (the error path). Use as a context manager."""

    def __init__(self, max_pending: int = _MAX_PENDING) -> None:
        self._digest = hashlib.sha256()
        self._items: deque[Any] = deque()
        self._pending = 0
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._stopped = False
        self._result: str | None = None
        self._thread = threading.Thread(target=self._run, name="unetbot-sha256", daemon=True)
        self._thread.start()

    def __enter__(self) -> OutputHash:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, data: Any) -> None:
        """Queue written bytes (bytes, memoryview, or a contiguous NumPy array)."""
        view = memoryview(data).cast("B")
        with self._cond:
            while (
                self._pending
                and self._pending + view.nbytes > self._max_pending
                and self._error is None
                and not self._stopped
            ):
                self._cond.wait()
            self._check()
            if self._error is not None:
                return  # the digest is lost already; the writer goes on
            self._pending += view.nbytes
            self._items.append(view)
            self._cond.notify_all()

    def add_range(self, path: Path, offset: int, length: int) -> None:
        """Queue `length` bytes of `path` from `offset` (a range the kernel copies)."""
        with self._cond:
            self._check()
            if self._error is not None:
                return
            self._items.append(_Range(Path(path), offset, length))
            self._cond.notify_all()

    def hexdigest(self) -> str | None:
        """The digest of everything queued (waits for the worker), or None if hashing failed."""
        if self._result is None:
            with self._cond:
                self._check()
                self._items.append(_END)
                self._cond.notify_all()
            self._thread.join()
            if self._error is not None:
                log.debug("streamed sha256 unavailable (%s): hashing the file", self._error)
                return None
            self._result = self._digest.hexdigest()
        return self._result

    def close(self) -> None:
        """Stop hashing and wait for the worker (idempotent; the digest is then unavailable
        unless `hexdigest` already returned it)."""
        with self._cond:
            self._stopped = True
            self._items.clear()
            self._items.append(_END)
            self._cond.notify_all()
        self._thread.join()

    def _check(self) -> None:
        if self._stopped and self._result is None:
            raise RuntimeError("output hash already closed")

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                item = self._items.popleft()
            if item is _END:
                return
            try:
                if isinstance(item, _Range):
                    hash_range(self._digest, item.path, item.offset, item.length)
                else:
                    self._digest.update(item)
            except Exception as exc:  # hexdigest() then says None: the writer hashes its file
                with self._cond:
                    self._error = exc
                    self._items.clear()
                    self._cond.notify_all()
                return
            finally:
                if not isinstance(item, _Range):
                    with self._cond:
                        self._pending -= item.nbytes
                        self._cond.notify_all()


@dataclass(frozen=True)
class SourceStamps:
    """Identity of the files whose ranges were hashed, before the write: if any changed by the
    end, a copied range may differ from what was hashed, and the written file is hashed instead."""

    stamps: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, paths: Iterable[Path]) -> SourceStamps:
        return cls(tuple((str(p), _stamp(Path(p))) for p in sorted(set(map(str, paths)))))

    def unchanged(self) -> bool:
        return all(_stamp(Path(p)) == stamp for p, stamp in self.stamps)


def _stamp(path: Path) -> tuple[int, ...]:
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
