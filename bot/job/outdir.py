"""Output folders are the user's: the bot deletes only what its own previous manifest lists.

A rerun into the same `--out` must not leave a stale artifact that could slip into a publish, and
must never delete anything else: `--out .` or `--out ~` must be safe. So before a run writes,
the folder is either missing, empty, or holds a `manifest.json` of an earlier run; then exactly
the files that manifest lists (artifact files, the grid, the manifest itself) are removed, and
folders left empty by that are removed too. A non-empty folder without a manifest is an error
that names it.

A run killed on its way (SIGKILL runs no cleanup) leaves its run journal (engine/formats/
journal.py): the next run first clears exactly what that journal lists (the files and temp
names the killed run was writing), and a folder holding such a journal is ours even without a
manifest, since the killed run had accepted it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.errors import BadInput, OutputFolderNotOurs
from engine.formats.journal import Recorder, clear_leftovers
from engine.formats.manifest import MANIFEST_NAME, Manifest

log = logging.getLogger("unetbot.outdir")


def _listed_files(manifest: Manifest) -> list[str]:
    paths = [f.path for a in manifest.artifacts for f in a.files]
    paths += [a.path for a in manifest.artifacts]
    if manifest.grid:
        paths.append(manifest.grid)
    return [*dict.fromkeys(paths), MANIFEST_NAME]


def _inside(folder: Path, relative: str) -> Path | None:
    """`folder/relative` when it stays inside `folder` (a manifest is input too)."""
    path = (folder / relative).resolve()
    return path if path.is_relative_to(folder.resolve()) and path != folder.resolve() else None


def prepare_output_folder(out: Path, journal: Recorder | None = None) -> None:
    """Make `out` ready for a new run (see the module docstring); raise if it is not ours.

    `journal` (the new run's, engine/formats/journal.py) is written before any earlier file
    is deleted, so a run killed while deleting them still finds the folder ours."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise BadInput(f"{out}: the output path exists and is not a folder")
    journaled, cleared = clear_leftovers(out)
    if cleared:
        log.info("%s: removed %d leftover(s) of an interrupted run", out, cleared)
    if not any(out.iterdir()):
        return
    if not (out / MANIFEST_NAME).is_file():
        if journaled:  # the interrupted run had accepted the folder; the rest is the user's
            return
        raise OutputFolderNotOurs(
            f"{out}: not empty and holds no {MANIFEST_NAME} of an earlier unetbot run; "
            "choose an empty or new output folder (nothing was deleted)"
        )
    manifest = Manifest.load(out)
    if journal is not None:
        journal.begin()
    removed = 0
    parents: set[Path] = set()
    for relative in _listed_files(manifest):
        path = _inside(out, relative)
        if path is None:
            raise BadInput(f"{out / MANIFEST_NAME}: lists {relative!r}, outside the folder")
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed += 1
            parents.add(path.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        while parent != out.resolve() and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    log.info("%s: removed %d file(s) of the previous run's manifest", out, removed)
