"""Durable, all-or-nothing file writes and kernel copies: the one implementation of each.

Every output of unetbot (weights, manifests, cards, the embedded Hub's objects) is written to a
hidden temp name beside its final path, fsynced, renamed, and the rename made durable by an fsync
of the folder; on any error the temp file is removed, so an interrupted run never leaves a
partial file under a real name. A write below a watched folder is announced before its first byte
(`watch_writes`, the run journal's hook), so a run killed with SIGKILL, where no cleanup runs,
leaves only names the next run can recognise. Local OS failures that no retry can fix (disk
full, permission denied, read-only filesystem) become `LocalIOError` with what to do about them.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import LocalIOError, TruncatedFile

_COPY_CHUNK = 64 * 1024 * 1024  # buffered fallback copy: bytes per read
# errnos of copy_file_range meaning "not here" (another filesystem, old kernel), not a failure
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}
_ADVICE = {
    errno.ENOSPC: "the disk is full: free space or choose another output folder",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another output folder",
    errno.EACCES: "permission denied: choose an output folder you can write to",
    errno.EPERM: "operation not permitted: choose an output folder you can write to",
    errno.EROFS: "the filesystem is read-only: choose another output folder",
}


def local_io_error(path: Path, exc: OSError) -> LocalIOError | None:
    """A `LocalIOError` saying what to do, for the OS errors a retry cannot fix; else None."""
    advice = _ADVICE.get(exc.errno or 0)
    if advice is None:
        return None
    return LocalIOError(f"{path}: {advice} ({os.strerror(exc.errno or 0)})")


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX: fsync the directory). Some filesystems refuse fsync on a
    directory; the file's own data is already fsynced then, so that is not an error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Folders whose writes are announced before their first byte (engine/formats/journal.py keeps a
# run journal from them): folder -> callback(final path). A module-level table, not a context
# variable, because the pipeline's writer thread writes too.
_watchers: dict[Path, Callable[[Path], None]] = {}
_watch_lock = threading.Lock()


def watch_writes(folder: Path, callback: Callable[[Path], None] | None) -> None:
    """Call `callback(final_path)` before any write below `folder` starts (None: stop)."""
    folder = Path(folder).resolve()
    with _watch_lock:
        if callback is None:
            _watchers.pop(folder, None)
        else:
            _watchers[folder] = callback


def announce(final_path: Path) -> None:
    """Tell the watcher of `final_path`'s folder (if any) that a write of it starts now: called
    by `atomic_output` and by writers that rename a whole temp folder into place."""
    final_path = Path(final_path).resolve()
    with _watch_lock:
        callbacks = [cb for f, cb in _watchers.items() if final_path.is_relative_to(f)]
    for callback in callbacks:
        callback(final_path)


def temp_path_for(final_path: Path) -> Path:
    """A fresh hidden temp name beside `final_path` for one atomic write (process, thread and
    a random part: two writers of the same path never share a temp file)."""
    final_path = Path(final_path)
    unique = f"{os.getpid()}-{threading.get_ident()}-{secrets.token_hex(4)}"
    return final_path.with_name(f".{final_path.name}.tmp-{unique}")


@contextmanager
def atomic_output(final_path: Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `final_path`; fsync + rename on success, delete on failure.

    `fsync=False` skips the durability syncs (only the embedded test Hub may ask for that)."""
    final_path = Path(final_path)
    announce(final_path)
    tmp = temp_path_for(final_path)
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, final_path)
        if fsync:
            fsync_dir(final_path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and (translated := local_io_error(final_path, exc)):
            raise translated from None
        raise


def atomic_write_bytes(final_path: Path, data: bytes, fsync: bool = True) -> Path:
    """Write `data` to `final_path` all or nothing."""
    with atomic_output(final_path, fsync) as tmp:
        tmp.write_bytes(data)
    return Path(final_path)


def copy_range(
    src_path: Path,
    offset: int,
    length: int,
    dst_fd: int,
    chunk: int = 256 * 1024 * 1024,
    after_chunk: Callable[[int], None] | None = None,
) -> None:
    """Append `length` bytes of `src_path` from `offset` at `dst_fd`'s current position.

    In the kernel (`copy_file_range`: no pass through user space) where the OS allows it, else
    through a buffer. `after_chunk(n)` runs after each chunk of n bytes (writeback hints)."""
    with open(src_path, "rb") as src:
        remaining, src_off = length, offset
        if hasattr(os, "copy_file_range"):
            try:
                while remaining:
                    n = os.copy_file_range(src.fileno(), dst_fd, min(remaining, chunk), src_off)
                    if n == 0:
                        raise TruncatedFile(f"{src_path}: ended {remaining} bytes early")
                    remaining -= n
                    src_off += n
                    if after_chunk:
                        after_chunk(n)
                return
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
        src.seek(src_off)
        while remaining:
            data = src.read(min(remaining, _COPY_CHUNK))
            if not data:
                raise TruncatedFile(f"{src_path}: ended {remaining} bytes early")
            view = memoryview(data)
            while view:
                view = view[os.write(dst_fd, view) :]
            remaining -= len(data)
            if after_chunk:
                after_chunk(len(data))
