"""`bot plan --json`: the work list as GitHub Actions matrices, one entry per source repo.

The plan is one incremental pass (bot/schedule/incremental.py) over what discovery lists
(bot/discover/listing.py), with the ledger (bot/ledger/model.py) as its memory: unchanged repos cost
no Hub call, changed ones a `model_info`, and only new inputs a judgement. For each supported
candidate, each publish target is settled by the ledger's records when they speak for this
source (published, or failed validation with this converter version, which is not redone),
else by the Hub's own markers (bot/ledger/target_check.py), whose answer is recorded. The ledger is
saved once at the end, merged with any run that wrote meanwhile.

GitHub caps a matrix at 256 jobs, so entries are dealt round-robin into up to 4 chunks of at most
256 (every chunk job runs `max-parallel` at a time, so a run of 480 repos uses all four, and
each chunk keeps the plan's priority order); the workflow fans out one convert job per entry of
each chunk (bot/schedule/cadence.py sizes it). Repos beyond the run budget are
listed as deferred (the next scheduled run picks them up): new revisions of repos already
published first, then the most downloaded.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from bot import reasons
from bot.choice import SourceSize, VariantChoice, choose_variants
from bot.client.hub import Hub
from bot.client.identity import Identity, bot_identity
from bot.config import BotConfig, PublishMode
from bot.discover.listing import Listing, list_repos
from bot.discover.scan import Candidate
from bot.ledger.model import Outcome
from bot.ledger.rebuild import open_book
from bot.ledger.store import LedgerBook
from bot.ledger.target_check import HubTargets
from bot.publish.state import Target, target_for
from bot.schedule import cadence
from bot.schedule.incremental import Seen, run_pass
from engine import __version__
from engine.errors import BudgetExhausted, HubError, HubRateLimited, PolicySkipped
from engine.run.variants import PublishTarget

log = logging.getLogger("unetbot.plan")
MAX_MATRIX = cadence.MAX_MATRIX
MAX_CHUNKS = cadence.CHUNKS  # the workflow has this many fan-out jobs (4 x 256 repos per run)


@dataclass
class Plan:
    entries: list[dict] = field(default_factory=list)
    done: list[dict] = field(default_factory=list)
    # Refusals decided this run (new or changed), and targets held back by a failure.
    skipped: list[dict] = field(default_factory=list)
    deferred: list[dict] = field(default_factory=list)
    unchanged: int = 0  # repos settled from the ledger without a Hub call
    calls: int = 0  # Hub requests (API + resolver) the plan made

    def chunks(self, size: int = MAX_MATRIX, count: int = MAX_CHUNKS) -> list[dict]:
        """The entries dealt round-robin into `count` chunks (fewer for fewer entries), more
        chunks only when `count` x `size` cannot hold them all."""
        n = len(self.entries)
        k = max(min(count, n), math.ceil(n / size))
        return [{"include": self.entries[i::k]} for i in range(k)]

    def to_dict(self, size: int = MAX_MATRIX) -> dict:
        return {
            "count": len(self.entries),
            "chunks": self.chunks(size),
            "done": self.done,
            "skipped": self.skipped,
            "deferred": self.deferred,
            "unchanged": self.unchanged,
            "calls": self.calls,
        }


@dataclass
class _Targets:
    """Settles a candidate's publish targets: the ledger's records first, else the Hub."""

    hub_targets: HubTargets
    book: LedgerBook | None
    me: Identity

    def pending(
        self, seen: Seen, kinds: list[PublishTarget], choice: VariantChoice
    ) -> tuple[list[Target], list[str]]:
        """(targets left to publish, why others are held back)."""
        c = seen.candidate
        entry = self.book.entry(c.repo_id) if self.book else None
        pending: list[Target] = []
        held: list[str] = []
        for kind in kinds:
            if not choice.per_target.get(kind) or (kind.is_pr and c.pr_skip):
                continue
            target = target_for(kind, c.repo_id, self.me.namespace)
            state = entry.target(kind, c.sha, c.fingerprint, __version__) if entry else None
            if state is None:
                try:
                    record = self.hub_targets.check(c, target)
                except PolicySkipped as exc:
                    held.append(f"{kind.key}: {exc}")
                    continue
                if self.book is not None:
                    self.book.add_target(c.repo_id, kind.key, record)
                    entry = self.book.entry(c.repo_id)
                state = record.status
            if state is Outcome.FAILED:
                failure = entry.failure(kind, c.sha, c.fingerprint) if entry else None
                names = ", ".join(failure.variants) if failure else "a variant"
                held.append(
                    f"{kind.key}: {names} failed validation with converter {__version__} for "
                    "these inputs; retried when the source or the converter changes"
                )
            elif state is Outcome.PENDING:
                pending.append(target)
        return pending, held


def _why_done(c: Candidate, choice: VariantChoice, mode: PublishMode) -> str:
    """Why a repo with no pending and no held-back target needs no work (bot/reasons.py)."""
    # a target neither pending nor held back, with work chosen: the ledger or the Hub has it
    why = {
        kind.key: reasons.no_work_chosen(kind, choice, c.pr_skip)
        or reasons.already_published(c.sha)
        for kind in mode.targets
    }
    return reasons.combine(why)


def make_plan(
    hub: Hub, config: BotConfig, mode: PublishMode | None = None, *, use_ledger: bool = True
) -> Plan:
    start = hub.requests
    mode = mode or PublishMode.parse(config.publish.mode)
    me = bot_identity(hub, config)
    book = open_book(hub, config, me.user, me.namespace, rebuild_lost=True) if use_ledger else None
    plan = Plan()
    try:
        listing = list_repos(hub, config.scan)
    except (BudgetExhausted, HubRateLimited) as exc:
        log.warning("listing stopped (%s): nothing is planned this run", exc)
        listing = Listing([], complete=False)
    settle = _Targets(HubTargets(hub, me.user, me.namespace), book, me)
    todo: list[tuple[Seen, dict]] = []

    def on_candidate(seen: Seen) -> None:
        c = seen.candidate
        row = {"repo_id": c.repo_id, "revision": c.sha}
        if not c.supported:
            if seen.fresh:
                plan.skipped.append({**row, "reason": c.reason})
            return
        size = SourceSize.of(c.unet_bytes, c.fp16_twin, seen.listed.downloads)
        choice = choose_variants("auto", mode, c.facts, config, size)
        targets, held = settle.pending(seen, list(mode.targets), choice)
        if targets:
            kind = c.kind.value if c.kind else ""
            keys = ",".join(t.kind.key for t in targets)
            todo.append((seen, {**row, "kind": kind, "targets": keys}))
        elif held:  # listed every run: a held-back target is a problem to look at
            plan.skipped.append({**row, "reason": "; ".join(held)})
        else:
            plan.done.append({**row, "reason": _why_done(c, choice, mode)})

    report = run_pass(hub, config, me.namespace, book, listing, on_candidate)
    # New revisions of repos already published first, then the most used.
    todo.sort(key=lambda t: (not t[0].urgent, -t[0].listed.downloads, t[0].listed.repo_id))
    for seen, entry in todo:
        if len(plan.entries) < config.budget.max_repos:
            plan.entries.append(entry)
        else:
            plan.deferred.append({**_row(seen), "reason": "run budget (max_repos) reached"})
    plan.deferred += [
        {"repo_id": listed.repo_id, "revision": listed.sha, "reason": reason}
        for listed, reason in report.deferred
    ]
    plan.unchanged = report.unchanged
    if book is not None:
        try:
            book.save(hub)
        except HubError as exc:  # the next run re-learns what this one found
            log.warning("the ledger was not saved: %s", exc)
    plan.calls = hub.requests - start
    return plan


def _row(seen: Seen) -> dict:
    return {"repo_id": seen.candidate.repo_id, "revision": seen.candidate.sha}


def write_github_output(plan: Plan, path: Path) -> None:
    """`chunk_0..chunk_3` (matrix JSON or empty), `count` and `has_work` for the workflow."""
    room = MAX_CHUNKS * MAX_MATRIX
    if len(plan.entries) > room:
        overflow = plan.entries[room:]
        plan.deferred += [{**e, "reason": f"more than {room} repos in one run"} for e in overflow]
        plan.entries = plan.entries[:room]
    chunks = plan.chunks()
    with open(path, "a", encoding="utf-8") as f:
        for i in range(MAX_CHUNKS):
            value = json.dumps(chunks[i], separators=(",", ":")) if i < len(chunks) else ""
            f.write(f"chunk_{i}={value}\n")
        f.write(f"count={len(plan.entries)}\n")
        f.write(f"has_work={'true' if plan.entries else 'false'}\n")
