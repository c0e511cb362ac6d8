"""Unpickle one statically scanned torch file in a child process (layer 3 of the pickle path).

The child (`engine/source/pickle_child.py`, run as `python -I`) gets an environment built from
scratch (no `HF_TOKEN`, no proxy or cache variables: nothing the parent holds), its own session
(killed as a group on timeout), an address-space limit (file size + `MEMORY_HEADROOM`: with
`mmap=True` the storages are mapped, not copied), a CPU-time limit and a file-size limit on
what it writes (set by the child on itself before it imports torch or opens the file), and a
wall-clock timeout. It loads with torch's `weights_only=True` unpickler (an
allow-list of globals enforced while unpickling) and writes a safetensors copy; the parent then
reads that copy's header with the engine's validating reader, and from there on the source is a
safetensors source like any other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import PickleRefused
from engine.formats.safetensors_io import read_header

CHILD = Path(__file__).with_name("pickle_child.py")
MEMORY_HEADROOM = 3 * 1024**3  # torch's import and the interpreter, beside the mapped file
_MIN_SECONDS = 120.0
_BYTES_PER_SECOND = 20e6  # the timeout grows with the file: 20 MB/s is far below any disk


@dataclass(frozen=True)
class Limits:
    """The child's limits for one file (see `limits_for`)."""

    memory_bytes: int
    seconds: float
    output_bytes: int

    def argv(self) -> list[str]:
        cpu = int(self.seconds) + 1
        return [str(self.memory_bytes), str(cpu), str(self.output_bytes)]


def limits_for(size: int) -> Limits:
    return Limits(size + MEMORY_HEADROOM, _MIN_SECONDS + size / _BYTES_PER_SECOND, 2 * size + 2**20)


def child_env() -> dict[str, str]:
    """The child's whole environment: enough to run Python, nothing of the parent's secrets."""
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


def load_in_child(src: Path, dst: Path, limits: Limits | None = None) -> dict:
    """Unpickle `src` in the child and write its tensors to `dst` (safetensors); returns what
    the child reported plus the seconds it took. Any failure is `PickleRefused` naming `src`."""
    src, dst = Path(src), Path(dst)
    limits = limits or limits_for(src.stat().st_size)
    dst.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-I", str(CHILD), str(src), str(dst), *limits.argv()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=str(dst.parent),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=limits.seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        dst.unlink(missing_ok=True)
        raise PickleRefused(
            f"{src}: loading it took longer than {limits.seconds:.0f} s; stopped"
        ) from None
    seconds = time.perf_counter() - started
    report = _last_json(out)
    if proc.returncode != 0 or "error" in report or not dst.is_file():
        dst.unlink(missing_ok=True)
        why = report.get("error") or _signal_reason(proc.returncode, err)
        raise PickleRefused(f"{src}: torch's weights_only loader refused it ({why})")
    header = read_header(dst)  # the engine's validating reader, as for any source
    if len(header.tensors) != report.get("tensors"):
        raise PickleRefused(f"{src}: the child wrote {len(header.tensors)} tensors, not "
                            f"{report.get('tensors')}")  # fmt: skip
    return {**report, "seconds": round(seconds, 3)}


def _last_json(out: bytes) -> dict:
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        value = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _signal_reason(code: int, err: bytes) -> str:
    if code < 0:
        return f"killed by signal {-code} (memory, CPU or output limit)"
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    return f"exit {code}: {tail[0][:300]}"
