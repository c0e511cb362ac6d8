"""Returning freed memory to the OS between large stages."""

from __future__ import annotations

import gc


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS.

    Models of ~1.7-3.4 GB come and go during validation; glibc keeps freed arenas mapped,
    which would make each stage's peak the sum of all previous ones. `malloc_trim` is the
    documented way to return them (Linux/glibc only; elsewhere a no-op)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
