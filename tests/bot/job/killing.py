"""Kill a `bot` process at a chosen write, deterministically, from the test side only.

The child gets a `sitecustomize` (on its PYTHONPATH) that wraps `os.replace`: on the N-th rename
of a file inside the watched folder, the process stops itself (SIGSTOP) just before renaming, so
the temp file is complete on disk and the run journal lists it. The test waits for the stop and
sends SIGKILL: what SIGKILL leaves at that point is exactly what a real kill would leave. Nothing
in the product knows about this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SITECUSTOMIZE = """
import os, signal, threading
_at = int(os.environ["_KILLTEST_STOP_AT"])
_folder = os.path.realpath(os.environ["_KILLTEST_FOLDER"])
_real_replace = os.replace
_seen = 0

def _replace(src, dst, *args, **kwargs):
    global _seen
    if os.path.realpath(os.fspath(src)).startswith(_folder + os.sep):
        _seen += 1
        if _seen == _at:
            # thread-directed: this thread stops before its next instruction (a signal to the
            # process may be taken by another thread while this one runs on)
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
    return _real_replace(src, dst, *args, **kwargs)

os.replace = _replace
"""


def stopper_env(base: dict[str, str], hooks: Path, folder: Path, at: int) -> dict[str, str]:
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), str(ROOT)])
    env["_KILLTEST_STOP_AT"] = str(at)
    env["_KILLTEST_FOLDER"] = str(folder)
    return env


def run_until_stopped(cmd: list[str], env: dict[str, str], timeout: float = 300) -> bool:
    """Start `cmd`; SIGKILL it once it stops itself. False when it ended before stopping."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            proc.send_signal(signal.SIGKILL)
            os.waitpid(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            return True
        if pid:  # it exited without reaching the stop
            proc.returncode = os.waitstatus_to_exitcode(status)
            return False
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise AssertionError(f"{cmd} neither stopped nor ended within {timeout} s")


def leftovers(folder: Path) -> list[str]:
    """Temp names and the run journal left in `folder`."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if ".tmp-" in p.name or p.name == ".unetbot-run.json"
    )
