"""Helpers shared by the benchmarks: measured subprocesses and the full-size fixture."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
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


def time_v(cmd: list[str], cwd: Path = ROOT, ok: tuple[int, ...] = (0,)) -> dict:
    """Wall time, peak RSS and exit code of `cmd` as a whole process, from GNU time's `-v` report
    (what a user sees: imports, writes, fsyncs and validation together). An exit code outside
    `ok` (the codes README "Exit codes" documents as an outcome the benchmark reports, e.g. 4 for
    a validating `bot convert` whose table shows the failed variant) stops the benchmark with the
    end of the command's stderr."""
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=cwd)
    if out.returncode not in ok:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-3000:]}")
    return {**time_v_report(out.stderr), "exit_code": out.returncode}


def time_v_report(stderr: str) -> dict:
    """{"wall_s", "peak_rss_mb", "cpu_s"} from the report `/usr/bin/time -v` appends to stderr (one
    reading for every benchmark that runs commands under GNU time)."""
    report = dict(
        line.strip().rsplit(": ", 1) for line in stderr.splitlines() if ": " in line.strip()
    )
    wall = report["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall)))
    peak_kb = int(report["Maximum resident set size (kbytes)"])
    cpu = float(report["User time (seconds)"]) + float(report["System time (seconds)"])
    return {"wall_s": seconds, "peak_rss_mb": peak_kb / 1024, "cpu_s": cpu}


def local_hub_client() -> None:
    """Set huggingface_hub up for a local Hub, before it is imported (its constants read the
    environment at import): no Xet (a local Hub has none), no telemetry, no progress bars."""
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_XET = True


def python_cmd(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def full_size_source(base: Path, kind: str = "sd15-lcm", with_pipeline: bool = False) -> Path:
    """A full-size random-weight SD1.5 (LCM by default) fp16 source, built once per folder.

    Built in a subprocess, so the generator's memory never counts against what is measured."""
    root = base / f"{kind}-full{'-pipeline' if with_pipeline else ''}"
    if not (root / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        code = (
            "from pathlib import Path; from engine.synthetic.models import write_pipeline_folder; "
            f"write_pipeline_folder(Path({str(root)!r}), {kind!r}, 'full', 'float16', 0, "
            f"{with_pipeline!r})"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return root


def machine() -> str:
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


# --- calibration (benchmarks/calibrate_thresholds.py, benchmarks/calibrate_comfy_gguf.py) -----

# A worst-metric column: (metric key, min or max, label).
Column = tuple[str, Callable[[float, float], float], str]
# The columns every calibration reports: the output gates, then the derived bounds.
WORST_COLUMNS: tuple[Column, ...] = (
    ("min_cosine", min, "min cosine"),
    ("max_rel_l2", max, "max rel L2"),
    ("max_tensor_rel_l2", max, "tensor rel L2"),
    ("quant_bound_ratio", max, "quant bound"),
    ("dequant_bound_ratio", max, "fp16 bound"),
)
CALIBRATION_KINDS = ("sd15", "sd15-lcm", "sd15-inpaint")


def open_gates(variants: list[str]) -> dict:
    """Open the calibrated gates of `variants` in this process only, so calibration sees every
    metric (a variant failing one would otherwise stop before its output metrics); the derived
    bounds stay: they hold for every correct file by construction. Returns the real gates."""
    import dataclasses

    from engine.run.variants import VARIANTS as REGISTRY
    from engine.validation.thresholds import Threshold

    real = {name: REGISTRY[name].threshold for name in variants}
    wide_open = Threshold(-1.0, float("inf"), float("inf"))
    for name in variants:
        REGISTRY[name] = dataclasses.replace(REGISTRY[name], threshold=wide_open)
    return real


def calibration_cases(seeds: int) -> list[tuple[str, str, str, int]]:
    """(kind, dtype, statistics, seed) of the tiny models: every kind of CALIBRATION_KINDS in
    float16 with seeds 0..seeds-1, the LCM also in bfloat16 and float32."""
    kinds = CALIBRATION_KINDS
    out = [(k, "float16", st, s) for k in kinds for st in ("init", "trained") for s in range(seeds)]
    out += [("sd15-lcm", dt, st, 0) for dt in ("bfloat16", "float32") for st in ("init", "trained")]
    return out


def merge_worst(total: dict, new: dict, columns: tuple[Column, ...]) -> None:
    """Fold one case's metrics per variant into `total`, keeping the worst of each column."""
    for variant, m in new.items():
        t = total.setdefault(variant, dict(m))
        for key, pick, _ in columns:
            t[key] = pick(t[key], m[key])


def print_worst(title: str, total: dict, columns: tuple[Column, ...], width: int) -> None:
    """The worst metrics per variant as a fixed-width table (`width`: the variant column)."""
    print(f"\n== {title}")
    print(f"{'variant':{width}}" + "".join(f"{label:>15}" for _, _, label in columns))
    for variant, m in total.items():
        print(f"{variant:{width}}" + "".join(f"{m[key]:15.6g}" for key, _, _ in columns))
