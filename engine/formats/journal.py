"""The run journal: what a run is writing into its output folder, on disk before the first byte.

A run killed with SIGKILL (Ctrl-C twice, the OOM killer, a cancelled CI job) runs no cleanup: it
can leave a temp file (`.NAME.tmp-...`), the temp folder of a diffusers writer, or a finished
file the manifest does not list yet. While `run_journal(folder)` is open, every write below
`folder` is announced before it starts (`fsio.announce`) and its final path is added to
`.unetbot-run.json` in that folder (rewritten atomically and fsynced each time: a handful of
paths per run). The journal is removed when the run ends normally, and kept when it fails or is
killed; it is created only with the run's first write, so a run refused before writing leaves
nothing behind.

The next run calls `clear_leftovers(folder)`: it removes exactly the paths the journal lists and
the hidden temp names unetbot gives them (`.NAME.tmp-...`), only when they were written after the
journal's run started (so a file of the user's with the same name, older than the run, stays),
then the journal itself. Nothing else in the folder is touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import BadInput
from engine.formats.fsio import atomic_write_bytes, fsync_dir, watch_writes

JOURNAL_NAME = ".unetbot-run.json"
# The temp names unetbot gives a path NAME: fsio.temp_path_for's `.NAME.tmp-PID-TID-HEX` and
# the diffusers writers' `tempfile.mkdtemp(prefix=".NAME.tmp-")`.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-[A-Za-z0-9_-]+$")
# File timestamps come from the kernel's coarse clock, a few ms behind time.time_ns().
_CLOCK_SLACK_NS = 2_000_000_000


@dataclass
class Journal:
    """The journal's content: which run, since when, and the paths it started writing."""

    started_ns: int
    pid: int
    about: dict = field(default_factory=dict)
    writing: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        body = {"unetbot_run_journal": 1, "started_ns": self.started_ns, "pid": self.pid}
        return json.dumps({**body, "about": self.about, "writing": self.writing}).encode()

    @classmethod
    def load(cls, path: Path) -> Journal:
        try:
            raw = json.loads(path.read_bytes())
            journal = cls(int(raw["started_ns"]), int(raw["pid"]), dict(raw.get("about", {})))
            journal.writing = [str(p) for p in raw["writing"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            why = f"not a unetbot run journal ({exc}); nothing was deleted"
            raise BadInput(f"{path}: {why}") from None
        return journal


class Recorder:
    """The watcher of one folder: appends each announced path to the journal."""

    def __init__(self, folder: Path, about: dict):
        self.folder = folder
        self.journal = Journal(time.time_ns(), os.getpid(), about)
        self.lock = threading.Lock()
        self.written = False

    def __call__(self, final_path: Path) -> None:
        if final_path == self.folder / JOURNAL_NAME:
            return
        relative = final_path.relative_to(self.folder).as_posix()
        with self.lock:
            if relative in self.journal.writing:
                return
            self.journal.writing.append(relative)
            self._save()

    def begin(self) -> None:
        """Write the journal now (before deleting an earlier run's files, say), if not yet."""
        with self.lock:
            if not self.written:
                self._save()

    def _save(self) -> None:
        atomic_write_bytes(self.folder / JOURNAL_NAME, self.journal.to_json())
        self.written = True


@contextmanager
def run_journal(folder: Path, about: dict | None = None) -> Iterator[Recorder]:
    """Journal every write below `folder` until the block ends (see the module docstring)."""
    folder = Path(folder).resolve()
    recorder = Recorder(folder, dict(about or {}))
    watch_writes(folder, recorder)
    try:
        yield recorder
    finally:
        watch_writes(folder, None)
    # Only after a normal end: a failed run keeps its journal, so the next run clears the
    # files it wrote that no manifest lists.
    if recorder.written:
        (folder / JOURNAL_NAME).unlink(missing_ok=True)
        fsync_dir(folder)


def _inside(folder: Path, relative: str) -> Path:
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder) or path == folder:
        raise BadInput(f"{folder / JOURNAL_NAME}: lists {relative!r}, outside the folder")
    return path


def _newer(path: Path, since_ns: int) -> bool:
    try:
        return path.lstat().st_mtime_ns >= since_ns
    except FileNotFoundError:
        return False


def _remove_tree_written_since(path: Path, since_ns: int) -> int:
    """Files below `path` written since `since_ns`, then the folders that leaves empty."""
    removed = 0
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            if _newer(Path(root, name), since_ns):
                Path(root, name).unlink()
                removed += 1
        for name in dirs:
            sub = Path(root, name)
            if sub.is_symlink():
                if _newer(sub, since_ns):
                    sub.unlink()
                    removed += 1
            elif not any(sub.iterdir()):
                sub.rmdir()
    if not any(path.iterdir()):
        path.rmdir()
    return removed


def _remove(path: Path, since_ns: int) -> int:
    if path.is_dir() and not path.is_symlink():
        return _remove_tree_written_since(path, since_ns)
    if _newer(path, since_ns):
        path.unlink()
        return 1
    return 0


def clear_leftovers(folder: Path) -> tuple[bool, int]:
    """Remove what a killed or failed run left in `folder` (see the module docstring).

    Returns (whether a run of unetbot had accepted the folder: its journal or the journal's
    temp file was there, how many files and temp entries were removed)."""
    folder = Path(folder).resolve()
    removed = 0
    for entry in folder.iterdir():  # the journal's own temp file: killed while writing it
        match = _TEMP_NAME.match(entry.name)
        if match and match["name"] == JOURNAL_NAME and entry.is_file():
            entry.unlink()
            removed += 1
    path = folder / JOURNAL_NAME
    if not path.is_file():
        return removed > 0, removed
    journal = Journal.load(path)
    since = journal.started_ns - _CLOCK_SLACK_NS
    targets = [_inside(folder, relative) for relative in journal.writing]
    parents = {t.parent for t in targets}
    for target in targets:
        if target.exists() or target.is_symlink():
            removed += _remove(target, since)
    for parent in parents:
        if not parent.is_dir():
            continue
        for entry in parent.iterdir():
            match = _TEMP_NAME.match(entry.name)
            if match and parent / match["name"] in targets and _newer(entry, since):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        while parent != folder and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    path.unlink()
    fsync_dir(folder)
    return True, removed
