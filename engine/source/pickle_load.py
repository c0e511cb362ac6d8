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

from engine.errors import BadInput, PickleRefused
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
    """Unpickle `src` in the child and write its tensors to `dst` (safetensors); what the
    child reported. Any failure is `PickleRefused` naming `src`."""
    return load_all_in_child([(Path(src), Path(dst))], limits)[0]


def load_all_in_child(pairs: list[tuple[Path, Path]], limits: Limits | None = None) -> list[dict]:
    """`load_in_child` for several files in one child (one interpreter and torch import), in
    order; the limits cover the largest file's mapping and all the files' time and output."""
    pairs = [(Path(s), Path(d)) for s, d in pairs]
    if limits is None:
        sizes = [s.stat().st_size for s, _ in pairs]
        one = limits_for(max(sizes))
        limits = Limits(one.memory_bytes, _MIN_SECONDS + sum(sizes) / _BYTES_PER_SECOND,
                        2 * sum(sizes) + 2**20)  # fmt: skip
    for _, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(p) for pair in pairs for p in pair]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-I", str(CHILD), *limits.argv(), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=str(pairs[0][1].parent),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=limits.seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        _remove(pairs)
        names = ", ".join(str(s) for s, _ in pairs)
        raise PickleRefused(
            f"{names}: loading took longer than {limits.seconds:.0f} s; stopped"
        ) from None
    reports = _json_lines(out)
    done = {r.get("src"): r for r in reports if "error" not in r}
    for src, dst in pairs:
        report = done.get(str(src))
        if proc.returncode == 0 and report is not None and dst.is_file():
            continue
        _remove(pairs)
        failed = next((r for r in reports if "error" in r), {})
        why = failed.get("error") or _signal_reason(proc.returncode, err)
        culprit = failed.get("src") or str(src)
        raise PickleRefused(f"{culprit}: torch's weights_only loader refused it ({why})")
    out_reports = []
    for src, dst in pairs:
        report = done[str(src)]
        try:
            header = read_header(dst)  # the engine's validating reader, as for any source
        except BadInput as exc:
            _remove(pairs)
            raise PickleRefused(f"{src}: the child's safetensors copy is unusable ({exc})") from exc
        if len(header.tensors) != report.get("tensors"):
            raise PickleRefused(f"{src}: the child wrote {len(header.tensors)} tensors, not "
                                f"{report.get('tensors')}")  # fmt: skip
        out_reports.append({k: v for k, v in report.items() if k != "src"})
    if out_reports:
        out_reports[0]["child_seconds"] = round(time.perf_counter() - started, 3)
    return out_reports


def _remove(pairs: list[tuple[Path, Path]]) -> None:
    for _, dst in pairs:
        dst.unlink(missing_ok=True)


def _json_lines(out: bytes) -> list[dict]:
    reports = []
    for line in out.decode("utf-8", "replace").strip().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            reports.append(value)
    return reports


def _signal_reason(code: int, err: bytes) -> str:
    if code < 0:
        return f"killed by signal {-code} (memory, CPU or output limit)"
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    return f"exit {code}: {tail[0][:300]}"
