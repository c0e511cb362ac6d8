"""Every variant of a full-size SD1.5 LCM fp16 pipeline converted and validated, per stage.

`--original`: the exact-copy path alone, as whole processes: `bot convert SRC --variants
original` (written, then proven by bytes and diffusers' load in fp16, no fp32 reference) against
`cp` + `sync` of the UNet file, each under /usr/bin/time -v. Goal: wall <= 5x the copy, peak RSS
<= the fp16 UNet (<= 2 GB). The in-process stage figures of the same run follow.

What `bot convert SRC --variants all --publish none` runs
(`engine.run.pipeline.convert_and_validate`: streaming writes in a background thread overlapping
validation), in-process with an RSS sampler that attributes the peak to the main thread's stage.
`--sequential` also times the un-overlapped path (convert everything, then validate) in the same
run, as the baseline. Goal: all variants converted and validated in <= 4 min wall and <= 6 GB peak
RSS on a 2-core machine. Prints the validation metrics per variant (the numbers README and
RESULTS.md quote).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from benchmarks.common import ROOT, full_size_source, machine, table, time_v


class StageSampler(threading.Thread):
    """Samples this process's RSS every 50 ms and keeps the peak per stage."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stage = "setup"
        self.peaks: dict[str, float] = {}
        self.started_at: dict[str, float] = {}
        self.walls: dict[str, float] = {}
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def enter(self, stage: str) -> None:
        now = time.perf_counter()
        if self.stage in self.started_at:
            self.walls[self.stage] = now - self.started_at[self.stage]
        self.stage = stage
        self.started_at[stage] = now

    def run(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss / 1e6
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss)
            time.sleep(0.05)

    def stop(self) -> None:
        self.enter("done")
        self._stop.set()


def _run(
    source: Path,
    out: Path,
    sequential: bool,
    sampler: StageSampler,
    grid: bool,
    variants: str = "all",
):
    """One full run; returns (manifest, convert seconds or None, total seconds)."""
    from engine.run.convert import convert
    from engine.run.pipeline import convert_and_validate
    from engine.run.validate import validate_manifest

    start = time.perf_counter()
    if not sequential:
        manifest = convert_and_validate(
            source, out, variants, progress=lambda what, i, n: sampler.enter(what), grid=grid
        )
        return manifest, None, time.perf_counter() - start
    convert(source, out, "all", progress=lambda v, i, n: sampler.enter(f"write {v}"))
    converted = time.perf_counter() - start
    sampler.enter("fp32 reference outputs")
    manifest = validate_manifest(
        out, source, progress=lambda v, i, n: sampler.enter(f"validate {v}")
    )
    return manifest, converted, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep/reuse the synthetic pipeline here")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="also time the un-overlapped path (convert everything, then validate) as a baseline",
    )
    parser.add_argument(
        "--grid", action="store_true", help="also make the validation grid (its own stage)"
    )
    parser.add_argument(
        "--original",
        action="store_true",
        help="only the exact-copy path: bot convert --variants original vs cp + sync",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.workdir or Path(tmp)
        source = full_size_source(base, with_pipeline=True)
        print(f"validate benchmark on {machine()}")
        if args.original:
            _original_vs_copy(source, Path(tmp))
            return
        modes = [False, True] if args.sequential else [False]
        for sequential in modes:
            out = Path(tmp) / ("out-sequential" if sequential else "out")
            _report(source, out, sequential, args.grid and not sequential)
            shutil.rmtree(out)


def _original_vs_copy(source: Path, tmp: Path) -> None:
    """Whole processes: cp + sync of the UNet (baseline), then the validated `original`."""
    unet = source / "unet" / "diffusion_pytorch_model.safetensors"
    copy = time_v(["sh", "-c", f"cp '{unet}' '{tmp / 'copy.safetensors'}' && sync"])
    out = tmp / "out-original"
    bot = [str(ROOT / ".venv" / "bin" / "bot"), "convert", str(source)]
    run = time_v([*bot, "--variants", "original", "--out", str(out), "--publish", "none"])
    shutil.rmtree(out)
    fp16_mb = unet.stat().st_size / 2**20
    rows = [
        {"process": "cp + sync (baseline)", **_fmt(copy)},
        {"process": "bot convert --variants original", **_fmt(run)},
    ]
    print("\n== validated original, whole processes (/usr/bin/time -v)")
    print(table(rows, list(rows[0])))
    print(
        f"wall {run['wall_s'] / copy['wall_s']:.1f}x the copy (goal <= 5x); peak RSS "
        f"{run['peak_rss_mb']:.0f} MB vs the fp16 UNet {fp16_mb:.0f} MB (goal <= it, <= 2 GB)"
    )
    _report(source, tmp / "out-original-inproc", False, False, "original")


def _fmt(measured: dict) -> dict:
    return {"wall_s": f"{measured['wall_s']:.1f}", "peak_rss_mb": f"{measured['peak_rss_mb']:.0f}"}


def _report(source: Path, out: Path, sequential: bool, grid: bool, variants: str = "all") -> None:
    sampler = StageSampler()
    sampler.start()
    manifest, converted, total = _run(source, out, sequential, sampler, grid, variants)
    sampler.stop()
    title = "sequential: convert all, then validate" if sequential else "pipelined (what bot runs)"
    print(f"\n== {title}")
    rows = [
        {
            "stage (main thread)": s,
            "wall_s": f"{sampler.walls.get(s, 0):.1f}",
            "peak_rss_mb": f"{p:.0f}",
        }
        for s, p in sampler.peaks.items()
        if s not in ("done",)
    ]
    print(table(rows, list(rows[0])))
    metric_rows = []
    for a in manifest.artifacts:
        assert a.validation is not None
        m = a.validation.metrics
        result = m.get("output", {})
        metric_rows.append(
            {
                "variant": a.variant,
                "status": a.validation.status,
                "MB": f"{a.bytes / 1e6:.0f}",
                "write_s": f"{a.details.get('seconds', 0):.1f}",
                "validate_s": f"{a.validation.seconds or 0:.1f}",
                "cosine": f"{result.get('cosine', float('nan')):.6f}",
                "rel_l2": f"{result.get('rel_l2', float('nan')):.5f}",
                "lcm_cosine": f"{m.get('lcm_4step', {}).get('cosine', float('nan')):.6f}",
                "tensor_rel_l2": f"{m.get('worst_tensor_rel_l2', 0):.5f}",
            }
        )
    print(table(metric_rows, list(metric_rows[0])))
    peak = max(sampler.peaks.values())
    split = f"convert {converted:.1f}s, validate {total - converted:.1f}s, " if converted else ""
    goals = (" (goal <= 240s)", " (goal <= 6000 MB)") if variants == "all" else ("", "")
    print(f"{split}total {total:.1f}s{goals[0]}; peak RSS {peak:.0f} MB{goals[1]}")
    failed = [a.variant for a in manifest.artifacts if not a.passed]
    print("failed:", failed or "none")


if __name__ == "__main__":
    main()
