"""Play the shipped cadence against a 10,000-source backlog: days to clear it, Hub calls per run.

The embedded Hub is seeded (bot/hub/bulk.py, as benchmarks/scan.py does) with N SD1.5 pipelines
the bot converts, named anything, with downloads falling off as 2,000,000 / rank (the 20 most
downloaded reach `budget.full_set_min_downloads` and get every file). Their weights are tiny:
judging reads configs and file lists, and what a job costs is taken from the measurement of a
full-size one (bot/schedule/cadence.py `MEASURED`, benchmarks/per_repo.py).

Each scheduled run is the shipped workflow's, on a simulated clock:
- it starts at its cron time (.github/workflows/bot.yml), or when the previous run ends (the
  workflow's concurrency group queues it);
- the plan job is the real `bot plan` (bot/schedule/plan.py) with the shipped config
  (.github/unetbot.yml), its ledger and its call budget, against the Hub's rate limits (a free
  account's, the window compressed `--speedup` times as in benchmarks/scan.py); its simulated
  time is what those calls take at the real limits, at least its measured wall;
- the convert jobs: each chunk of the plan's matrix runs `max-parallel` jobs at a time, each
  taking the measured job time plus the fixed start-up (a popular source: its full-set time).
  A job's outcome is recorded in the ledger as the job's ledger hook records it (published,
  with the plan's targets), so the next plan sees it; a job's own Hub calls are the measured
  count of a real job (`--job-calls`, benchmarks/per_repo.py) and are added to the run's calls.

Usage: .venv/bin/python benchmarks/backlog.py [--repos 10000] [--workdir DIR]
Heavy (many minutes of CPU): run it under `flock /tmp/unetbot-heavy.lock`.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import local_hub_client, machine, table  # noqa: E402

local_hub_client()  # before huggingface_hub is imported

import yaml  # noqa: E402

from benchmarks.scan import BOT, BOT_TOKEN, accounts, spec  # noqa: E402
from bot.client.hub import hub_for  # noqa: E402
from bot.client.pacing import RateLimits  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.hub import start_hub  # noqa: E402
from bot.hub.bulk import Seeder, seed_many  # noqa: E402
from bot.ledger.model import Outcome, TargetRecord  # noqa: E402
from bot.ledger.rebuild import open_book  # noqa: E402
from bot.schedule.cadence import MEASURED  # noqa: E402
from bot.schedule.plan import make_plan  # noqa: E402
from bot.settings import Settings  # noqa: E402
from engine import __version__  # noqa: E402

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "bot.yml"
SHIPPED = REPO_ROOT / ".github" / "unetbot.yml"


def shipped_workflow() -> dict:
    """Cron hours, max-parallel per chunk and the chunk count of bot.yml."""
    wf = yaml.safe_load(WORKFLOW.read_text())
    cron = wf[True]["schedule"][0]["cron"].split()  # pyyaml reads `on:` as True
    converts = [j for n, j in wf["jobs"].items() if n.startswith("convert-")]
    return {
        "minute": int(cron[0]),
        "hours": [int(h) for h in cron[1].split(",")],
        "max_parallel": converts[0]["strategy"]["max-parallel"],
        "chunks": len(converts),
    }


def downloads(rank: int) -> int:
    return 2_000_000 // (rank + 1)


def seed(work: Path, n: int) -> float:
    start = time.perf_counter()
    specs = (dataclasses.replace(spec("sd15", i), downloads=downloads(i)) for i in range(n))
    with Seeder(work / "root") as seeder:
        seed_many(seeder, specs, workers=4)
    return time.perf_counter() - start


def ticks(wf: dict):
    """Scheduled start times in minutes from day 0, 00:00."""
    day = 0
    while True:
        for h in sorted(wf["hours"]):
            yield day * 1440 + h * 60 + wf["minute"]
        day += 1


def convert_minutes(chunks: list[list[dict]], parallel: int, popular: set[str]) -> float:
    """Each chunk runs `parallel` jobs at a time, in order; the phase ends with its last job."""
    longest = 0.0
    for chunk in chunks:
        slots = [0.0] * min(parallel, len(chunk))
        for entry in chunk:
            t = heapq.heappop(slots)
            job = MEASURED.full_set_job if entry["repo_id"] in popular else MEASURED.job
            heapq.heappush(slots, t + job + MEASURED.fixed)
        longest = max(longest, max(slots, default=0.0))
    return longest


def record_published(hub, config, plan) -> None:
    """What each convert job's ledger hook records (bot/job/ledger_hooks.py): published."""
    book = open_book(hub, config, BOT, BOT, rebuild_lost=False)
    for e in plan.entries:
        entry = book.entry(e["repo_id"])
        for key in e["targets"].split(","):
            record = TargetRecord(
                Outcome.PUBLISHED, e["revision"], entry.fingerprint if entry else "",
                __version__, "2026-12-07T00:00:00+00:00", f"sim://{e['repo_id']}/{key}",
            )  # fmt: skip
            book.add_target(e["repo_id"], key, record)
    book.save(hub)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--speedup", type=float, default=12.0, help="rate-limit window compression")
    parser.add_argument("--job-calls", type=int, default=40, help="Hub calls of one convert job")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--max-runs", type=int, default=200)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="unetbot-backlog-"))
    work.mkdir(parents=True, exist_ok=True)
    wf = shipped_workflow()
    config = load_config(SHIPPED)
    real = RateLimits.of(config.budget)
    fast = RateLimits(real.api, real.resolvers, real.window / args.speedup)
    config.budget = dataclasses.replace(
        config.budget, window_seconds=fast.window, max_minutes=600.0
    )
    popular = {
        spec("sd15", i).repo_id
        for i in range(args.repos)
        if downloads(i) >= config.budget.full_set_min_downloads > 0
    }
    seed_s = seed(work, args.repos)
    print(f"machine: {machine()}; seeded {args.repos} sources in {seed_s:.1f} s")
    print(
        f"shipped: cron {wf['minute']} {wf['hours']}, {wf['chunks']} chunks x max-parallel "
        f"{wf['max_parallel']}, max_repos {config.budget.max_repos}, scan.max_calls "
        f"{config.scan.max_calls}; per job {MEASURED.job} min (+{MEASURED.fixed} fixed), "
        f"full set {MEASURED.full_set_job} min ({len(popular)} popular sources)"
    )
    rows, done, clock = [], 0, 0.0
    schedule = ticks(wf)
    with start_hub(work / "root", config=accounts(work, fast), durable=False) as running:
        stats = running.state.stats
        for n in range(1, args.max_runs + 1):
            tick = next(schedule)
            while tick < clock:  # runs that fired meanwhile wait in the concurrency group
                tick = next(schedule)
            start = max(tick, clock)
            before = {b: stats.bucket(b) for b in ("api", "resolvers")}
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
            hub = hub_for(
                Settings(running.endpoint, BOT_TOKEN, None, str(cache)),
                config.scan.max_calls,
                config.budget.max_minutes,
                fast,
            )
            t0 = time.perf_counter()
            plan = make_plan(hub, config)
            wall = time.perf_counter() - t0
            api = stats.bucket("api") - before["api"]
            resolvers = stats.bucket("resolvers") - before["resolvers"]
            # At the real limits the plan's calls take this long (its own wall at least).
            plan_min = max(wall / 60, api / real.api * real.window / 60)
            plan_min = max(plan_min, resolvers / real.resolvers * real.window / 60)
            chunks = [c["include"] for c in plan.chunks()]
            convert_min = convert_minutes(chunks, wf["max_parallel"], popular)
            if plan.entries:
                record_published(hub, config, plan)
            done += len(plan.entries)
            clock = start + plan_min + convert_min + (MEASURED.report if plan.entries else 1)
            rows.append(
                {
                    "run": n,
                    "starts": f"day {start / 1440:.2f}",
                    "plan calls": api + resolvers,
                    "job calls": len(plan.entries) * args.job_calls,
                    "plan min": f"{plan_min:.1f}",
                    "converted": len(plan.entries),
                    "deferred": len(plan.deferred),
                    "converts min": f"{convert_min:.0f}",
                    "ends": f"day {clock / 1440:.2f}",
                    "total": done,
                }
            )
            print(rows[-1], flush=True)
            if not plan.entries and done >= args.repos:
                break
    print(table(rows, list(rows[0])))
    cleared = next((r for r in rows if r["total"] >= args.repos), None)
    if cleared:
        print(
            f"backlog of {args.repos} cleared by the end of run {cleared['run']}: {cleared['ends']}"
        )
    print(f"steady state (nothing new): {rows[-1]['plan calls']} plan calls per run")


if __name__ == "__main__":
    main()
