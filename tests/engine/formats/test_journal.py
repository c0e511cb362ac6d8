"""The run journal (engine/formats/journal.py): written before a run's first byte, removed after a
normal end, kept after a failure; `clear_leftovers` removes exactly what it lists."""

from __future__ import annotations

import json
import os
import time

import pytest

from engine.errors import BadInput
from engine.formats.fsio import atomic_output, atomic_write_bytes, temp_path_for
from engine.formats.journal import JOURNAL_NAME, clear_leftovers, run_journal


def test_a_run_that_ends_normally_leaves_no_journal(tmp_path):
    with run_journal(tmp_path):
        atomic_write_bytes(tmp_path / "a.bin", b"a")
        assert json.loads((tmp_path / JOURNAL_NAME).read_text())["writing"] == ["a.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_run_that_writes_nothing_creates_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), run_journal(out):
        raise RuntimeError("refused before the first byte")
    assert not out.exists()


def test_a_failed_run_keeps_its_journal_and_the_next_clears_its_files(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's")
    with pytest.raises(RuntimeError), run_journal(tmp_path):
        atomic_write_bytes(tmp_path / "sub" / "done.bin", b"finished, not in a manifest")
        with atomic_output(tmp_path / "half.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed here")
    assert (tmp_path / JOURNAL_NAME).is_file()
    assert clear_leftovers(tmp_path) == (True, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_only_files_written_since_the_run_started_are_removed(tmp_path):
    """A file of the user's with a listed name, older than the run, stays; so do hidden files
    with a temp-like name of a path the journal does not list."""
    old = tmp_path / "model.bin"
    old.write_bytes(b"the user's")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    (tmp_path / ".notes.txt.tmp-1-2-abcd").write_text("an editor's")
    with (
        pytest.raises(RuntimeError),
        run_journal(tmp_path),
        atomic_output(tmp_path / "model.bin") as tmp,
    ):
        tmp.write_bytes(b"partial")
        os.link(tmp, tmp_path / "kept-temp")  # what SIGKILL would leave: the temp itself
        raise RuntimeError("killed")
    os.rename(tmp_path / "kept-temp", temp_path_for(tmp_path / "model.bin"))
    journaled, removed = clear_leftovers(tmp_path)
    assert journaled and removed == 1
    assert old.read_bytes() == b"the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.txt.tmp-1-2-abcd", "model.bin"]


def test_a_journal_cannot_point_outside_its_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    body = {"started_ns": 0, "pid": 1, "writing": ["../victim.txt"]}
    (out / JOURNAL_NAME).write_text(json.dumps(body))
    with pytest.raises(BadInput, match="outside the folder"):
        clear_leftovers(out)
    assert victim.read_text() == "keep"


def test_a_malformed_journal_is_an_error_that_deletes_nothing(tmp_path):
    (tmp_path / JOURNAL_NAME).write_text("{not json")
    (tmp_path / "a.bin").write_bytes(b"a")
    with pytest.raises(BadInput, match="nothing was deleted"):
        clear_leftovers(tmp_path)
    assert (tmp_path / "a.bin").is_file()
