"""Helpers shared by the benchmarks: measured subprocesses and the full-size fixture."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def measure(cmd: list[str], repeat: int = 1) -> dict:
    """Best wall time and its peak RSS of `cmd` over `repeat` runs, each in a fresh wrapper."""
    best: dict | None = None
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, str(HERE / "_measure.py"), *cmd],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or result["wall_s"] < best["wall_s"]:
            best = result
    assert best is not None
    return best


def time_v(cmd: list[str], cwd: Path = ROOT) -> dict:
    """Wall time and peak RSS of `cmd` as a whole process, from GNU time's `-v` report (what
    a user sees: imports, writes, fsyncs and validation together)."""
    out = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], check=True, capture_output=True, text=True, cwd=cwd
    )
    report = dict(
        line.strip().rsplit(": ", 1) for line in out.stderr.splitlines() if ": " in line.strip()
    )
    wall = report["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall)))
    peak_kb = int(report["Maximum resident set size (kbytes)"])
    return {"wall_s": seconds, "peak_rss_mb": peak_kb / 1024}


def python_cmd(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def full_size_source(base: Path, kind: str = "sd15-lcm", with_pipeline: bool = False) -> Path:
    """A full-size random-weight SD1.5 (LCM by default) fp16 source, built once per folder.

    Built in a subprocess, so the generator's memory never counts against what is measured."""
    root = base / f"{kind}-full{'-pipeline' if with_pipeline else ''}"
    if not (root / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        code = (
            "from pathlib import Path; from engine.synthetic import write_pipeline_folder; "
            f"write_pipeline_folder(Path({str(root)!r}), {kind!r}, 'full', 'float16', 0, "
            f"{with_pipeline!r})"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return root


def machine() -> str:
    import os

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.now(UTC).date().isoformat()}"
    )


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("-+-".join("-" * widths[c] for c in columns))
    for r in rows:
        lines.append(" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))
    return "\n".join(lines)
