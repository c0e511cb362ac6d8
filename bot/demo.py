"""`bot demo`: the whole job end to end on the embedded Hub, twice.

Starts the embedded Hub on a free port, seeds it with generated repos (bot/seed.py), then runs
what the scheduled workflow runs: scan -> plan -> convert + validate + publish per repo. Prints
what was published and why each skip happened; then runs again to show nothing is redone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bot.client.hub import hub_for
from bot.client.pacing import RateLimits
from bot.config import PublishMode, load_config
from bot.job.run import JobRequest, run_job
from bot.progress import display
from bot.schedule.plan import make_plan
from bot.seed import demo_config, seeded_hub
from bot.settings import load_settings


@dataclass
class RoundReport:
    title: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # repo, outcome, detail

    def render(self) -> str:
        from io import StringIO

        from rich.console import Console
        from rich.table import Table

        table = Table("source repo", "outcome", "detail", title=self.title, show_lines=False)
        for row in self.rows:
            table.add_row(*row)
        buffer = StringIO()
        width = shutil.get_terminal_size((120, 24)).columns  # $COLUMNS, else the terminal's
        Console(file=buffer, width=min(width, 140)).print(table)
        return buffer.getvalue()


def run_round(title: str, config_path: Path, out_root: Path) -> RoundReport:
    settings = load_settings()
    config = load_config(config_path)
    limits = RateLimits.of(config.budget)
    hub = hub_for(settings, config.scan.max_calls, config.scan.max_minutes, limits)
    plan = make_plan(hub, config)
    report = RoundReport(title)
    for entry in plan.entries:
        request = JobRequest(
            entry["repo_id"],
            out_root / entry["repo_id"].replace("/", "__"),
            variants="auto",
            publish=PublishMode.parse(config.publish.mode),
            revision=entry["revision"],
        )
        result = run_job(request, config, hub)
        failed = result.failed()
        if failed:
            report.rows.append((entry["repo_id"], "validation failed", ", ".join(failed)))
        n = len(result.manifest.artifacts) if result.manifest else 0
        for url in result.published:
            report.rows.append((entry["repo_id"], "published", url))
        if not result.published and not failed:
            report.rows.append((entry["repo_id"], "nothing published", result.skipped or f"{n}"))
    for e in plan.done:
        report.rows.append((e["repo_id"], "already done", e["reason"]))
    for e in plan.skipped:
        report.rows.append((e["repo_id"], "skipped", e["reason"]))
    for e in plan.deferred:
        report.rows.append((e["repo_id"], "deferred", e["reason"]))
    return report


def run_demo(workdir: Path | None = None) -> list[RoundReport]:
    """Seed a fresh embedded Hub, run the bot twice, return both rounds' reports.

    Everything (the Hub's storage, the download cache, the output folders: ~140 MB) goes under
    `workdir`, kept for a look afterwards; without one, under a temp folder removed at the end."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="unetbot-demo-") as tmp:
            return _rounds(Path(tmp))
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return _rounds(Path(workdir))


def _rounds(base: Path) -> list[RoundReport]:
    # torch's compile cache folder, which torch creates in the system temp folder otherwise (and
    # records in this variable) the first time it looks for it: before the seeding imports torch
    saved = os.environ.get(_INDUCTOR)
    os.environ[_INDUCTOR] = str(base / "torchinductor")
    try:
        return _seeded_rounds(base)
    finally:
        if saved is None:
            os.environ.pop(_INDUCTOR, None)
        else:
            os.environ[_INDUCTOR] = saved


_INDUCTOR = "TORCHINDUCTOR_CACHE_DIR"


def _seeded_rounds(base: Path) -> list[RoundReport]:
    with seeded_hub(base):  # restores the environment on exit
        config_path = demo_config(base / "bot.yaml")
        display().event(
            "demo: seeded the embedded Hub; run 1 of 2 (scan -> plan -> convert -> "
            "validate -> publish)"
        )
        first = run_round(
            "run 1: scan -> plan -> convert -> validate -> publish", config_path, base / "out"
        )
        display().event("demo: run 2 of 2 (same revisions: nothing to redo)")
        second = run_round("run 2: same revisions, nothing to redo", config_path, base / "out2")
        return [first, second]


NEXT_STEPS = """\
next:
  bot variants                     every variant, its format, what loads it
  bot convert FOLDER --out out     convert a local diffusers folder (--variants all)
  bot validate out                 re-check a folder from its manifest.json
  bot bench out --max-ram 8GB      the cost of each file here, and a pick
  bot demo --workdir demo          keep the demo's Hub and files in ./demo"""
