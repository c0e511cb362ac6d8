"""Output folders are the user's: a run deletes only what its previous manifest lists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.job.outdir import prepare_output_folder
from engine.errors import BadInput, ExitCode, OutputFolderNotOurs
from engine.formats.manifest import Artifact, FileEntry, Manifest

ROOT = Path(__file__).resolve().parents[3]


def _previous_run(folder: Path) -> None:
    (folder / "quanto-int8").mkdir(parents=True)
    for name in ("m.unet.safetensors", "quanto-int8/config.json", "grid.png"):
        (folder / name).write_bytes(b"x")
    files = {"original": "m.unet.safetensors", "quanto-int8": "quanto-int8/config.json"}
    artifacts = [
        Artifact(v, "f", path, 1, "0", [], [FileEntry(path, 1, "0")]) for v, path in files.items()
    ]
    Manifest(source={}, artifacts=artifacts, grid="grid.png").save(folder)


def test_missing_and_empty_folders_are_fine(tmp_path):
    prepare_output_folder(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    prepare_output_folder(tmp_path / "empty")
    assert (tmp_path / "empty").is_dir()


def test_only_the_previous_manifest_s_files_are_removed(tmp_path):
    _previous_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "quanto-int8" / "mine.txt").write_text("mine too")
    prepare_output_folder(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["notes.txt", "quanto-int8", "quanto-int8/mine.txt"]


def test_emptied_subfolders_go_too(tmp_path):
    _previous_run(tmp_path)
    prepare_output_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_manifest_is_never_touched(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputFolderNotOurs, match="nothing was deleted"):
        prepare_output_folder(tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_manifest_cannot_point_outside_the_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    manifest = {
        "source": {},
        "artifacts": [{"variant": "original", "format": "f", "path": "../victim.txt",
                       "bytes": 1, "sha256": "0", "consumers": []}],
        "schema_version": 1,
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match="outside the folder"):
        prepare_output_folder(out)
    assert victim.read_text() == "keep"


def test_bot_convert_into_the_working_directory_deletes_nothing(tiny_pipeline, tmp_path):
    """`bot convert SRC --out .` in a folder holding the user's files: refused, exit 2."""
    folder = tiny_pipeline("sd15", full=False)
    (tmp_path / "precious.txt").write_text("data")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "convert", str(folder), "--out", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr[-2000:]
    assert "no manifest.json" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]
