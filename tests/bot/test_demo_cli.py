"""`bot demo` as a user runs it: a log without cursor control, both tables and the next commands
on stdout, and nothing left in the system temp folder, run after run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_demo_runs_leave_nothing_in_the_temp_folder(tmp_path):
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(system_tmp), "COLUMNS": "100"}
    for _ in range(2):
        log = tmp_path / "demo.log"
        with open(log, "wb") as err:
            proc = subprocess.run(
                [sys.executable, "-m", "bot.cli", "demo"], cwd=ROOT, env=env,
                stdout=subprocess.PIPE, stderr=err, text=True, timeout=1200,
            )  # fmt: skip
        text = log.read_text()
        assert proc.returncode == 0, text[-3000:]
        assert list(system_tmp.iterdir()) == []
        assert "\r" not in text and "\x1b[" not in text
        assert " INFO " not in text
        for title in ("run 1: scan -> plan", "run 2: same revisions", "next:"):
            assert title in proc.stdout, proc.stdout
        assert proc.stdout.rstrip().endswith("keep the demo's Hub and files in ./demo")
