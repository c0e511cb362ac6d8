"""forget_pages: a GGUF tensor's file pages leave the process's resident set once read, and its
values read the same afterwards (the mapping is file-backed: nothing is lost)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.validation.gguf_tensors import forget_pages, open_reader

MB = 1 << 20


def mapped_rss(path: Path) -> int:
    """Resident bytes of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        first = line.split(maxsplit=1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping's header line
            inside = line.rstrip().endswith(str(path))
        elif inside and first == "Rss:":
            total += int(line.split()[1]) * 1024
    return total


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pages") / "two.gguf"
    writer = gguf.GGUFWriter(str(path), "sd1")
    rng = np.random.default_rng(0)
    writer.add_tensor("first", rng.standard_normal(8 * MB // 4, dtype=np.float32))
    writer.add_tensor("second", rng.standard_normal(8 * MB // 4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads /proc/self/smaps")
def test_read_pages_are_dropped_and_values_stay(gguf_file):
    reader, problem = open_reader(gguf_file)
    assert reader is not None, problem
    first, second = reader.tensors
    before = float(np.asarray(first.data, dtype=np.float64).sum())  # touches every page
    float(np.asarray(second.data, dtype=np.float64).sum())
    assert mapped_rss(gguf_file) >= 15 * MB
    forget_pages(reader, first)
    assert mapped_rss(gguf_file) <= 9 * MB  # the second tensor's pages are still there
    forget_pages(reader, second)
    assert mapped_rss(gguf_file) < 1 * MB
    assert float(np.asarray(first.data, dtype=np.float64).sum()) == before
