"""keep_freed_memory: freed memory stays in the process inside the block, and goes back after."""

from __future__ import annotations

import ctypes
import resource

import pytest
import torch

from engine.memory import keep_freed_memory, release_memory

try:
    HAS_GLIBC = hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
except OSError:
    HAS_GLIBC = False

pytestmark = pytest.mark.skipif(not HAS_GLIBC, reason="mallopt is glibc's")

MB = 1 << 20
BLOCK = 256 * MB  # above glibc's default (at most 32 MB) mmap threshold: a fresh mapping


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def allocate_and_free() -> None:
    block = torch.ones(BLOCK // 4)  # every page written
    del block


def test_freed_block_is_kept_inside_and_returned_on_leaving():
    with keep_freed_memory():
        before = rss()
        allocate_and_free()
        release_memory()  # inside the block: collects, but keeps the pages
        kept = rss() - before
    returned = rss() - before
    assert kept > BLOCK * 0.9
    assert returned < BLOCK * 0.2


def allocate_model() -> list:
    """Eight 34 MB tensors, each above glibc's largest dynamic mmap threshold (32 MB)."""
    return [torch.ones(34 * MB // 4) for _ in range(8)]


def test_freed_memory_is_reused_not_faulted_in_again():
    """The point of keeping: once a model's worth of memory has been freed, the next model of
    the same shapes takes no new pages. (A single tensor is not enough to show it: torch asks
    glibc for 64-byte aligned blocks, which need a little more than the block just freed, so
    reuse comes from freed neighbours merging; two warm-up rounds give it that room.)"""
    size = 8 * 34 * MB
    with keep_freed_memory():
        for _ in range(2):
            model = allocate_model()
            del model
        for _ in range(2):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            model = allocate_model()
            del model
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
            assert faults * resource.getpagesize() < size * 0.2


def test_nested_blocks_keep_until_the_outer_one_ends():
    with keep_freed_memory():
        before = rss()
        with keep_freed_memory():
            allocate_and_free()
        assert rss() - before > BLOCK * 0.9
    assert rss() - before < BLOCK * 0.2


def test_outside_a_block_freed_memory_goes_back():
    before = rss()
    allocate_and_free()
    release_memory()
    assert rss() - before < BLOCK * 0.2
