"""Run `bot ARGS...` in this process with each stage of a Hub job timed (benchmarks/per_repo.py).

The job's own stage functions (bot/job/hub_source.py: judge, fetch, convert + validate, publish,
ledger) are wrapped, not replaced: each call records its wall time, and a sampler thread reads
this process's RSS every 50 ms and keeps the peak of the stage running at the time. What runs
between stages (pending-target checks, start-up) is the stage "other". CPU seconds (all
threads) are kept beside the wall: on a shared machine they move less than the wall does.
Written as JSON to the path in `UNETBOT_STAGES_OUT` when the command ends.

Usage: python benchmarks/_stages.py actions convert REPO --out OUT ...
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES: dict[str, dict[str, float]] = {}
current = ["other"]
start = time.monotonic()


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _stage(name: str) -> dict[str, float]:
    return STAGES.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0, "calls": 0})


def _cpu() -> float:
    """CPU seconds of this process, all threads (less sensitive to a busy machine than wall)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _sample() -> None:
    while True:
        s = _stage(current[0])
        s["peak_rss_mb"] = max(s["peak_rss_mb"], _rss_mb())
        time.sleep(0.05)


def timed(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        outer, current[0] = current[0], name
        t0, c0 = time.monotonic(), _cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            s = _stage(name)
            s["wall_s"] += time.monotonic() - t0
            s["cpu_s"] += _cpu() - c0
            s["calls"] += 1
            current[0] = outer

    return wrapper


def _write() -> None:
    total = time.monotonic() - start
    inner = sum(s["wall_s"] for n, s in STAGES.items() if n != "other")
    _stage("other")["wall_s"] = total - inner
    _stage("other")["cpu_s"] = _cpu() - sum(s["cpu_s"] for n, s in STAGES.items() if n != "other")
    path = os.environ.get("UNETBOT_STAGES_OUT")
    if path:
        Path(path).write_text(json.dumps({"total_s": total, "stages": STAGES}, indent=1))


def main() -> None:
    from bot.job import hub_source
    from bot.job.ledger_hooks import JobLedger

    for name, attr in [
        ("judge", "judge"),
        ("fetch", "fetch"),
        ("convert + validate", "convert_stage"),
        ("publish", "execute"),
    ]:
        setattr(hub_source, attr, timed(name, getattr(hub_source, attr)))
    JobLedger.record = timed("ledger", JobLedger.record)
    threading.Thread(target=_sample, daemon=True).start()
    atexit.register(_write)
    from bot.cli import app

    sys.argv = ["bot", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
