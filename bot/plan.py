"""`bot plan --json`: the work list as GitHub Actions matrices, one entry per source repo.

GitHub caps a matrix at 256 jobs, so entries are split into chunks of at most 256; the
workflow fans out one convert job per entry of each chunk. Repos beyond the run budget are
listed as deferred (the next scheduled run picks them up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bot.choice import choose_variants
from bot.config import BotConfig, PublishMode
from bot.hubclient import Hub
from bot.job import bot_identity, pending_targets
from bot.scan import scan

MAX_MATRIX = 256
MAX_CHUNKS = 4  # the workflow has this many fan-out jobs (4 x 256 repos per run at most)


@dataclass
class Plan:
    entries: list[dict] = field(default_factory=list)
    done: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    deferred: list[dict] = field(default_factory=list)

    def chunks(self, size: int = MAX_MATRIX) -> list[dict]:
        return [{"include": self.entries[i : i + size]} for i in range(0, len(self.entries), size)]

    def to_dict(self, size: int = MAX_MATRIX) -> dict:
        return {
            "count": len(self.entries),
            "chunks": self.chunks(size),
            "done": self.done,
            "skipped": self.skipped,
            "deferred": self.deferred,
        }


def make_plan(hub: Hub, config: BotConfig, mode: PublishMode | None = None) -> Plan:
    mode = mode or PublishMode.parse(config.publish.mode)
    me = bot_identity(hub, config)
    plan = Plan()
    for candidate in scan(hub, config, me.namespace):
        row = {"repo_id": candidate.repo_id, "revision": candidate.sha}
        if not candidate.supported:
            plan.skipped.append({**row, "reason": candidate.reason})
            continue
        choice = choose_variants("auto", mode, candidate.has_full_pipeline, config)
        targets = pending_targets(hub, candidate, choice, mode, me)
        if not targets:
            plan.done.append({**row, "reason": "already published for this revision"})
        elif len(plan.entries) >= config.budget.max_repos:
            plan.deferred.append({**row, "reason": "run budget (max_repos) reached"})
        else:
            kind = candidate.kind.value if candidate.kind else ""
            keys = ",".join(t.key for t in targets)
            plan.entries.append({**row, "kind": kind, "targets": keys})
    return plan


def write_github_output(plan: Plan, path: Path) -> None:
    """`chunk_0..chunk_3` (matrix JSON or empty), `count` and `has_work` for the workflow."""
    chunks = plan.chunks()
    if len(chunks) > MAX_CHUNKS:
        overflow = [e for c in chunks[MAX_CHUNKS:] for e in c["include"]]
        plan.deferred += [{**e, "reason": "more than 1024 repos in one run"} for e in overflow]
        plan.entries = plan.entries[: MAX_CHUNKS * MAX_MATRIX]
        chunks = chunks[:MAX_CHUNKS]
    with open(path, "a", encoding="utf-8") as f:
        for i in range(MAX_CHUNKS):
            value = json.dumps(chunks[i], separators=(",", ":")) if i < len(chunks) else ""
            f.write(f"chunk_{i}={value}\n")
        f.write(f"count={len(plan.entries)}\n")
        f.write(f"has_work={'true' if plan.entries else 'false'}\n")
