"""`bot convert REPO --publish pr` killed (SIGKILL) at several points, each time rerun with the same
arguments into the same --out: the last rerun exits 0, the repo has exactly one PR of the bot,
the user's own file in --out is still there and no temp file is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.bot.job.killing import ROOT, leftovers, run_until_stopped, stopper_env

REPO = "alice/tiny-lcm"


def _bot_prs(api) -> list:
    return list(api.get_repo_discussions(REPO, author="unetbot", discussion_type="pull_request"))


def _kill_during_commit(seeded_hub, cmd: list[str]) -> None:
    """Hold the PR commit on the server (a fault rule) and SIGKILL the client meanwhile."""
    seeded_hub.set_faults(
        [{"kind": "delay", "method": "POST", "path": "/commit/", "calls": [1], "delay": 4}]
    )
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    seen = 0
    while seen < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        seen = seeded_hub.running.state.faults.snapshot()[0].get("seen", 0)
    assert seen >= 1, "the run never reached the commit"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(5)  # the held request's handler finishes server-side before the rerun
    seeded_hub.set_faults([])


def test_publish_pr_killed_at_four_points_then_rerun(seeded_hub, tmp_path):
    api = seeded_hub.owner_api()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bot.cli", "convert", REPO, "--publish", "pr"]
    cmd += ["--config", str(seeded_hub.config_path), "--out", str(out)]
    # Renames into --out: 1 the run journal's first write, 2 the original file's temp complete,
    # 4 the manifest's temp complete (the file is written, not yet validated).
    for i, at in enumerate((1, 2, 4)):
        env = stopper_env(dict(os.environ), tmp_path / "hooks", out, at)
        assert run_until_stopped(cmd, env), f"the run ended before its rename #{at}"
        assert any(".tmp-" in name for name in leftovers(out)), (at, leftovers(out))
        if i == 0:
            (out / "mine.txt").write_text("the user's own notes")
    assert _bot_prs(api) == []
    _kill_during_commit(seeded_hub, cmd)
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_bot_prs(api)) == 1
    assert leftovers(out) == []
    assert (out / "mine.txt").read_text() == "the user's own notes"
    again = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_bot_prs(api)) == 1
