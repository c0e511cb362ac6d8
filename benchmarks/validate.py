"""Every variant of a full-size SD1.5 LCM fp16 pipeline converted and validated, per stage.

What `bot convert SRC --variants all --publish none` runs (engine.convert + engine.validate),
in-process with an RSS sampler that attributes the peak to the stage running. Goal: all variants
converted and validated in <= 4 min wall and <= 6 GB peak RSS on a 2-core machine. Prints the
validation metrics per variant (the numbers README and RESULTS.md quote).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from benchmarks.common import full_size_source, machine, table


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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        source = full_size_source(base, with_pipeline=True)
        sampler = StageSampler()
        sampler.start()
        sampler.enter("import")
        from engine.convert import convert
        from engine.validate import validate_manifest

        start = time.perf_counter()
        convert(source, base / "out", "all", progress=lambda v, i, n: sampler.enter(f"convert {v}"))
        converted = time.perf_counter()
        sampler.enter("validate: fp32 reference outputs")
        manifest = validate_manifest(
            base / "out", source, progress=lambda v, i, n: sampler.enter(f"validate {v}")
        )
        total = time.perf_counter() - start
        sampler.stop()
        rows = [
            {"stage": s, "wall_s": f"{sampler.walls.get(s, 0):.1f}", "peak_rss_mb": f"{p:.0f}"}
            for s, p in sampler.peaks.items()
            if s not in ("done",)
        ]
        print(f"validate benchmark on {machine()}")
        print(table(rows, ["stage", "wall_s", "peak_rss_mb"]))
        metric_rows = []
        for a in manifest.artifacts:
            v = a.validation or {}
            m = v.get("metrics", {})
            out = m.get("output", {})
            metric_rows.append(
                {
                    "variant": a.variant,
                    "status": v.get("status"),
                    "MB": f"{a.bytes / 1e6:.0f}",
                    "cosine": f"{out.get('cosine', float('nan')):.6f}",
                    "rel_l2": f"{out.get('rel_l2', float('nan')):.5f}",
                    "lcm_cosine": f"{m.get('lcm_4step', {}).get('cosine', float('nan')):.6f}",
                    "tensor_rel_l2": f"{m.get('worst_tensor_rel_l2', 0):.5f}",
                }
            )
        print(table(metric_rows, list(metric_rows[0])))
        peak = max(sampler.peaks.values())
        print(
            f"convert {converted - start:.1f}s, validate {total - (converted - start):.1f}s, "
            f"total {total:.1f}s (goal <= 240s); peak RSS {peak:.0f} MB (goal <= 6000 MB)"
        )
        failed = [a.variant for a in manifest.artifacts if not a.passed]
        print("failed:", failed or "none")


if __name__ == "__main__":
    main()
