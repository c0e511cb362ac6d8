"""A `bot convert` killed at any write (SIGKILL: no cleanup runs) and rerun with the same
arguments succeeds: the rerun clears what the killed run was writing (its run journal lists it),
keeps the user's own files, and leaves no temp file behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.bot.job.killing import ROOT, leftovers, run_until_stopped, stopper_env

VARIANTS = "original,gguf-q8_0,quanto-int8"


def test_local_convert_killed_at_each_write_then_rerun(tiny_pipeline, tmp_path):
    """Kill points (renames into --out, counted in one run of these variants): 1 the run
    journal's first write, 2 the original file's temp complete, 5 the quanto temp folder
    complete, 8 the GGUF's temp complete with two artifacts already in the manifest."""
    src = tiny_pipeline("sd15", full=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bot.cli", "convert", str(src), "--variants", VARIANTS]
    cmd += ["--out", str(out)]
    base = {**os.environ, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for i, at in enumerate((1, 2, 5, 8)):
        env = stopper_env(base, tmp_path / "hooks", out, at)
        assert run_until_stopped(cmd, env), f"the run ended before its rename #{at}"
        left = leftovers(out)
        assert any(".tmp-" in name for name in left), (at, left)  # a temp file was being written
        if i == 0:
            (out / "mine.txt").write_text("the user's own notes")  # a folder we had accepted
    proc = subprocess.run(cmd, cwd=ROOT, env=base, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert leftovers(out) == []
    assert (out / "mine.txt").read_text() == "the user's own notes"
    manifest = json.loads((out / "manifest.json").read_text())
    statuses = {a["variant"]: a["validation"]["status"] for a in manifest["artifacts"]}
    assert statuses == dict.fromkeys(VARIANTS.split(","), "passed")
    names = {p.name for p in out.iterdir()}
    assert names == {
        "manifest.json",
        "mine.txt",
        f"{src.name}.unet.safetensors",
        f"{src.name}-Q8_0.gguf",
        "quanto-int8",
    }


def test_a_foreign_folder_is_still_refused_after_the_journal_rules(tiny_pipeline, tmp_path):
    """A hidden file that looks like a temp name but no journal of ours: not ours, exit 2."""
    src = tiny_pipeline("sd15", full=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".thesis.tex.tmp-1-2-abcd").write_text("an editor's swap file")
    cmd = [sys.executable, "-m", "bot.cli", "convert", str(src), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert [p.name for p in out.iterdir()] == [".thesis.tex.tmp-1-2-abcd"]
