"""One incremental pass over the listed repos: what each costs, in what order, within budget.

For every listed repo, cheapest first:
1. decided from the list page (policy, a pipeline class that never holds an SD1.5-family
   UNet): no call; the verdict is recorded only when it is new;
2. unchanged: the head sha is the ledger's and its judgement still holds (same policy
   config; a refusal also needs the same converter version): no call;
3. changed: one `model_info` (with file metadata). Same input fingerprint as recorded (a
   README-only commit): the judgement carries over, nothing is downloaded. Otherwise the
   repo is judged (bot/discover/scan.py `judge`: its configs and headers).

Work in step 3 runs in a fixed order: new revisions of repos the bot already published
first, then the backlog by downloads (most used first), starting after the ledger's cursor
(where the last run's budget stopped it) and wrapping around, so every candidate is judged
within ceil(cost / budget) runs even when the backlog is longer than one run's budget. A
repo is started only when its worst-case cost plus the calls kept for saving the ledger fit
in the run's budget; a spent budget or a Hub that keeps answering 429 defers the rest to the
next run, it never fails a repo. A judgement that failed on the Hub's side (5xx after
retries, not found) is reported for this run and not recorded, so the next run tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bot.client.hub import Hub
from bot.config import BotConfig
from bot.discover.fingerprint import fingerprint_of
from bot.discover.listing import Listed, Listing, list_repos, listing_verdict
from bot.discover.policy import policy_skip
from bot.discover.scan import Candidate, judge_safely, model_info, repo_facts
from bot.ledger.model import Cursor, Entry, Stage, Verdict, now
from bot.ledger.rebuild import open_book
from bot.ledger.store import LedgerBook
from engine import __version__
from engine.errors import BudgetExhausted, ExitCode, HubNotFound, HubRateLimited
from engine.source.classify import ModelKind

log = logging.getLogger("unetbot.incremental")
# Worst case of one repo: model_info 1, a config HEAD + GET 2, a root checkpoint header 2,
# the PR list 1 + one PR's details 1, a marked revision's model_info 1.
ITEM_COST = 8
# Kept for the ledger at the end: its write (create, preupload, commit) and one conflict
# (a re-read and a second write).
SAVE_RESERVE = 8
_RECORDED = {
    ExitCode.OK,
    ExitCode.UNSUPPORTED,
    ExitCode.BAD_INPUT,
    ExitCode.POLICY_SKIPPED,
    ExitCode.INTERNAL_ERROR,  # a bug: judged again by the next converter version
}


def policy_digest(config: BotConfig) -> str:
    """What a recorded judgement depends on besides the repo: the policy config."""
    raw = json.dumps(asdict(config.policy), sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass
class Seen:
    """A listed repo with this run's candidate for it."""

    listed: Listed
    candidate: Candidate
    fresh: bool  # decided this run (a call was made, or the verdict changed)
    urgent: bool = False  # a new revision of a repo the bot already published


@dataclass
class PassReport:
    seen: list[Seen]
    deferred: list[tuple[Listed, str]]  # repo and why it waits for the next run
    unchanged: int  # repos settled from the ledger and the page, no call


def verdict_of(candidate: Candidate, stage: Stage) -> Verdict:
    return Verdict(
        candidate.status,
        candidate.reason,
        int(candidate.refusal),
        stage,
        candidate.kind.value if candidate.kind else "",
        candidate.licence,
        candidate.unet_bytes,
        candidate.has_full_pipeline,
        candidate.unet_folder,
        candidate.fp16_twin,
        candidate.pr_skip,
    )


def candidate_from(verdict: Verdict, listed: Listed, sha: str, fingerprint: str) -> Candidate:
    """The candidate a recorded judgement stands for (today's card and licence)."""
    return Candidate(
        listed.repo_id,
        sha,
        verdict.status,
        verdict.reason,
        kind=ModelKind(verdict.kind) if verdict.kind else None,
        refusal=ExitCode(verdict.refusal),
        licence=listed.licence,
        unet_bytes=verdict.unet_bytes,
        has_full_pipeline=verdict.has_full_pipeline,
        unet_folder=verdict.unet_folder,
        fp16_twin=verdict.fp16_twin,
        pr_skip=verdict.pr_skip,
        fingerprint=fingerprint,
        card_data=listed.card,
    )


class IncrementalPass:
    """One pass (module docstring); `on_candidate` is called for every repo in pass order,
    inside the budget (the plan checks publish targets there)."""

    def __init__(self, hub: Hub, config: BotConfig, namespace: str, book: LedgerBook | None):
        self.hub, self.config, self.namespace, self.book = hub, config, namespace, book
        self.policy = policy_digest(config)
        self.on_candidate: Callable[[Seen], None] = lambda seen: None

    def _entry(self, repo_id: str) -> Entry | None:
        return self.book.entry(repo_id) if self.book else None

    def _holds(self, entry: Entry | None) -> bool:
        """A recorded judgement that is still valid for the same inputs."""
        if entry is None or entry.verdict is None or entry.verdict.stage is not Stage.JUDGED:
            return False
        if entry.policy != self.policy:
            return False
        return entry.verdict.supported or entry.version == __version__

    def _record(self, candidate: Candidate, stage: Stage) -> None:
        if self.book is None:
            return
        old = self._entry(candidate.repo_id) or Entry(candidate.repo_id)
        fingerprint = candidate.fingerprint or (old.fingerprint if stage is Stage.LISTING else "")
        self.book.put(
            Entry(
                candidate.repo_id,
                candidate.sha,
                fingerprint,
                verdict_of(candidate, stage),
                __version__,
                self.policy,
                now(),
                old.targets,
            )
        )

    def run(self, listing: Listing, on_candidate: Callable[[Seen], None]) -> PassReport:
        self.on_candidate = on_candidate
        report = PassReport([], [], 0)
        work: list[tuple[Listed, Entry | None]] = []
        for listed in listing.repos:
            entry = self._entry(listed.repo_id)
            zero = listing_verdict(listed, self.config.policy, self.namespace)
            if zero is not None:
                seen = self._listing_verdict(listed, entry, *zero)
            elif entry is not None and entry.sha == listed.sha and self._holds(entry):
                assert entry.verdict is not None
                candidate = candidate_from(entry.verdict, listed, listed.sha, entry.fingerprint)
                seen = Seen(listed, candidate, fresh=False)
            else:
                work.append((listed, entry))
                continue
            report.unchanged += not seen.fresh
            if not self._visit(seen, report):
                report.deferred.append((listed, "budget spent checking its targets"))
        if self.book is not None and listing.complete:
            listed_ids = {r.repo_id for r in listing.repos}
            for gone in [k for k in self.book.ledger.entries if k not in listed_ids]:
                self.book.forget(gone)  # deleted, made private, or no longer tagged
        self._run_work(work, report)
        return report

    def _listing_verdict(
        self, listed: Listed, entry: Entry | None, reason: str, code: ExitCode
    ) -> Seen:
        candidate = Candidate(listed.repo_id, listed.sha, "skipped", reason, refusal=code)
        candidate.licence, candidate.card_data = listed.licence, listed.card
        verdict = verdict_of(candidate, Stage.LISTING)
        fresh = entry is None or entry.sha != listed.sha or entry.verdict != verdict
        if fresh:
            self._record(candidate, Stage.LISTING)
        return Seen(listed, candidate, fresh)

    def _visit(self, seen: Seen, report: PassReport) -> bool:
        """Hand a candidate on; False when its follow-up ran out of budget."""
        try:
            self.on_candidate(seen)
        except (BudgetExhausted, HubRateLimited) as exc:
            log.info("%s: deferred (%s)", seen.listed.repo_id, exc)
            return False
        report.seen.append(seen)
        return True

    def _order(self, work: list[tuple[Listed, Entry | None]]) -> list[tuple[Listed, Entry | None]]:
        def key(item: tuple[Listed, Entry | None]) -> tuple[int, str]:
            return (-item[0].downloads, item[0].repo_id)

        urgent = sorted((w for w in work if w[1] is not None and w[1].has_published), key=key)
        backlog = sorted((w for w in work if w[1] is None or not w[1].has_published), key=key)
        cursor = self.book.ledger.cursor if self.book else None
        if cursor is not None:
            after = [w for w in backlog if not cursor.passed(w[0].downloads, w[0].repo_id)]
            backlog = after + [w for w in backlog if cursor.passed(w[0].downloads, w[0].repo_id)]
        return urgent + backlog

    def _run_work(self, work: list[tuple[Listed, Entry | None]], report: PassReport) -> None:
        ordered = self._order(work)
        last_backlog: Listed | None = None
        stopped = False
        for i, (listed, entry) in enumerate(ordered):
            urgent = entry is not None and entry.has_published
            if not self.hub.can_spend(ITEM_COST + SAVE_RESERVE):
                reason = "not judged this run: the run's call or time budget is spent"
                report.deferred += [(w[0], reason) for w in ordered[i:]]
                stopped = True
                break
            try:
                seen = self._resolve(listed, entry)
            except (BudgetExhausted, HubRateLimited) as exc:
                reason = f"not judged this run ({exc})"
                report.deferred += [(w[0], reason) for w in ordered[i:]]
                stopped = True
                break
            seen.urgent = urgent
            if not urgent:
                last_backlog = listed
            if not self._visit(seen, report):
                report.deferred.append((listed, "budget spent checking its targets"))
        if self.book is not None:
            if not stopped:
                self.book.set_cursor(None)  # the whole backlog was reached
            elif last_backlog is not None:
                self.book.set_cursor(Cursor(last_backlog.downloads, last_backlog.repo_id))

    def _resolve(self, listed: Listed, entry: Entry | None) -> Seen:
        """A changed repo: one model_info, then either the recorded judgement (same inputs)
        or a new one."""
        try:
            info = model_info(self.hub, listed.repo_id)
        except HubNotFound as exc:  # gone between the listing and now
            if self.book is not None:
                self.book.forget(listed.repo_id)
            skipped = Candidate(listed.repo_id, listed.sha, "skipped", str(exc))
            skipped.refusal = exc.exit_code
            return Seen(listed, skipped, fresh=True)
        fingerprint = fingerprint_of(info)
        same_inputs = bool(fingerprint) and entry is not None and entry.fingerprint == fingerprint
        if same_inputs and self._holds(entry):
            assert entry is not None and entry.verdict is not None
            return self._carry_over(listed, entry.verdict, info, fingerprint)
        candidate = judge_safely(self.hub, listed.repo_id, self.config, self.namespace, info)
        if candidate.refusal in _RECORDED:
            self._record(candidate, Stage.JUDGED)
        return Seen(listed, candidate, fresh=True)

    def _carry_over(self, listed: Listed, verdict: Verdict, info, fingerprint: str) -> Seen:
        """Same inputs as judged before: the judgement holds for the new sha, nothing is
        downloaded; only the policy is asked again (the card and file names may differ)."""
        sha = info.sha or listed.sha
        candidate = candidate_from(verdict, listed, sha, fingerprint)
        reason = policy_skip(repo_facts(info), self.config.policy, self.namespace)
        if reason:
            candidate.refuse(reason, ExitCode.POLICY_SKIPPED)
            self._record(candidate, Stage.LISTING)
        else:
            self._record(candidate, Stage.JUDGED)
        return Seen(listed, candidate, fresh=True)


def run_pass(
    hub: Hub,
    config: BotConfig,
    namespace: str,
    book: LedgerBook | None,
    listing: Listing,
    on_candidate: Callable[[Seen], None] | None = None,
) -> PassReport:
    """One incremental pass (module docstring)."""
    runner = IncrementalPass(hub, config, namespace, book)
    return runner.run(listing, on_candidate or (lambda seen: None))


def scan_with_ledger(
    hub: Hub, config: BotConfig, user: str, namespace: str
) -> tuple[list[Candidate], list[tuple[Listed, str]]]:
    """`bot scan`: the incremental pass with the ledger read (never written: a scan only
    looks); returns the candidates and the repos deferred by the budget."""
    book = open_book(hub, config, user, namespace, rebuild_lost=False)
    if book is not None:
        book.writable = False
    report = run_pass(hub, config, namespace, book, list_repos(hub, config.scan))
    return [s.candidate for s in report.seen], report.deferred
