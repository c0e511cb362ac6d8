"""Returning freed memory to the OS between large stages, and keeping it while validating."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager

# glibc's mallopt parameters (malloc.h) and its documented defaults (mallopt(3)).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024
# Every tensor of a validation (the largest, a 1280x1280x3x3 float32 convolution, is 59 MB;
# a forward pass's largest activation ~130 MB) is below this, so all of them come from the heap.
_HEAP_BELOW = 1 << 30
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int

_keeping = 0  # depth of keep_freed_memory() blocks


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (not inside
    `keep_freed_memory`, which keeps them for the next artifact).

    Models of ~1.7-3.4 GB come and go during validation; glibc keeps freed arenas mapped,
    which would make each stage's peak the sum of all previous ones. `malloc_trim` is the
    documented way to return them (Linux/glibc only; elsewhere a no-op)."""
    if _keeping:
        gc.collect()
    else:
        return_kept_memory()


def return_kept_memory() -> None:
    """`release_memory`, also inside `keep_freed_memory`, before a consumer's loader that maps a
    whole file while it reads (diffusers' GGUF reader, `from_pretrained` of a quantized folder)
    or a child process that loads a whole model (stable-diffusion.cpp): the pages it maps, or
    the child's memory, and what the heap keeps would otherwise add up (`--variants all` at full
    size peaked at 7.1 GB without this, 5.7 GB with it)."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@contextmanager
def keep_freed_memory() -> Iterator[None]:
    """Within the block, memory freed by the process stays in its heap and is reused, instead
    of going back to the OS and being faulted in again, page by page, by the next allocation.

    Why: by default glibc serves blocks above its (dynamic, at most 32 MB) mmap threshold with
    fresh mappings and returns the top of the heap on each free, so every forward pass's large
    activations, every float32 copy of a source tensor and every artifact's 3.4 GB of
    dequantized weights are new pages: validating two lossy GGUFs faulted in 33 GB (8.1 million
    minor faults), and on a virtual machine a page brought back costs microseconds. With this,
    `--variants all` at full size validates in 189.7 s instead of 214.6-222.5 s, a ComfyUI-GGUF
    Q5_0 file in 16.3 s instead of 21.3-23.8 s (benchmarks/RESULTS.md). PyTorch's CPU tuning
    guide makes the same point when it recommends a caching allocator (jemalloc, TCMalloc);
    mallopt does it with the allocator already loaded.

    What the heap keeps is the most it ever held at once, fragmentation included (5.4 GB at full
    size), so it is handed back before a loader maps a whole file (`return_kept_memory`); the
    peak went down, 5.47-5.86 -> 5.27 GiB. On leaving, glibc's initial thresholds (128 KiB) are
    set again, without its dynamic adjustment, and the kept memory is returned (`malloc_trim`).
    Without glibc this does nothing."""
    global _keeping
    libc = _libc()
    if libc is None:
        yield
        return
    if not _keeping:
        libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_HEAP_BELOW))
        libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_NEVER_TRIM))
    _keeping += 1
    try:
        yield
    finally:
        _keeping -= 1
        if not _keeping:
            libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_GLIBC_DEFAULT_THRESHOLD))
            libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_GLIBC_DEFAULT_THRESHOLD))
            gc.collect()
            libc.malloc_trim(0)
