"""The job pipeline's two touches of the ledger (bot/job/run.py): read it in the pending-targets
stage, record the job's outcome after publishing.

- A target the ledger records as published from the same source (same revision, or same
  input fingerprint: a README-only commit) is not pending; nor is one whose variants failed
  validation for the same inputs with the same converter version (`engine.__version__`):
  the next scheduled run does not redo it until the source or the converter changes. Any
  other target is checked on the Hub as before, and the publish step's own "already
  published?" check runs before every commit: the ledger can hold a target back, never
  publish one twice.
- After publishing, each target's outcome (published with its URL and the variants left
  out because they failed validation, or failed when none passed) is recorded with the source
  revision, fingerprint and converter version, and saved at once (merged with any run that
  wrote meanwhile). Left-out variants are tried again when the source or the converter
  version changes, as the published card's `unetbot.left_out` says (bot/publish/state.py).

Only publishing jobs use the ledger (not `--dry-run`, not `--publish none`). A ledger that
cannot be read or written never fails a job: it is logged, and the Hub's markers decide.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot.choice import VariantChoice
from bot.client.hub import Hub
from bot.config import BotConfig, PublishMode
from bot.discover.scan import Candidate
from bot.ledger.model import Entry, Outcome, Stage, TargetRecord, now
from bot.ledger.rebuild import open_book
from bot.ledger.store import LedgerBook
from bot.publish.state import Target
from bot.schedule.incremental import policy_digest, verdict_of
from engine import __version__
from engine.errors import BadInput, HubError
from engine.formats.manifest import Manifest
from engine.run.variants import PublishTarget

log = logging.getLogger("unetbot.ledger")


class JobOutcome(Protocol):
    """What a job's result says (bot/job/run.py JobResult)."""

    manifest: Manifest | None
    published_to: dict[str, str]  # target key -> URL of what was published


class JobLedger:
    """The ledger as one job sees it."""

    def __init__(self, book: LedgerBook, config: BotConfig):
        self.book, self.config = book, config

    def settled(self, candidate: Candidate, kind: PublishTarget) -> bool:
        """True when the ledger says `kind` needs no work for this source."""
        entry = self.book.entry(candidate.repo_id)
        if entry is None:
            return False
        state = entry.target(kind, candidate.sha, candidate.fingerprint, __version__)
        if state is Outcome.FAILED:
            log.warning(
                "%s: %s not redone: it failed validation with converter %s for these inputs "
                "(ledger %s)",
                candidate.repo_id,
                kind.key,
                __version__,
                self.book.where.repo_id,
            )
        return state in (Outcome.PUBLISHED, Outcome.FAILED)

    def held_back(
        self, candidate: Candidate, choice: VariantChoice, mode: PublishMode
    ) -> list[str]:
        """The targets of `mode` the ledger holds back because they failed for these inputs
        and this converter version (a job says so rather than "already published")."""
        entry = self.book.entry(candidate.repo_id)
        if entry is None:
            return []
        return [
            kind.key
            for kind in mode.targets
            if choice.per_target.get(kind)
            and entry.target(kind, candidate.sha, candidate.fingerprint, __version__)
            is Outcome.FAILED
        ]

    def record(
        self,
        hub: Hub,
        candidate: Candidate,
        pending: dict[PublishTarget, Target],
        chosen: VariantChoice,
        result: JobOutcome,
    ) -> None:
        """Record each pending target's outcome (as bot/job/run.py's publish loop decided it: the
        variants that passed are published, those that failed are left out; a target where
        none passed is not published) and the judgement, then save."""
        try:
            self._record_judgement(candidate)
            artifacts = result.manifest.artifacts if result.manifest else []
            for kind in pending:
                mine = [a for a in artifacts if a.variant in chosen.names(kind)]
                if not mine:
                    continue
                failed = tuple(a.variant for a in mine if not a.passed)
                published = len(failed) < len(mine)
                record = TargetRecord(
                    Outcome.PUBLISHED if published else Outcome.FAILED,
                    candidate.sha,
                    candidate.fingerprint,
                    __version__,
                    now(),
                    result.published_to.get(kind.key, "") if published else "",
                    failed,
                    "failed validation" if failed else "",
                )
                self.book.add_target(candidate.repo_id, kind.key, record)
            self.book.save(hub)
        except (HubError, BadInput) as exc:
            log.warning("%s: outcome not recorded in the ledger: %s", candidate.repo_id, exc)

    def _record_judgement(self, candidate: Candidate) -> None:
        old = self.book.entry(candidate.repo_id) or Entry(candidate.repo_id)
        if old.sha == candidate.sha and old.verdict is not None:
            return
        self.book.put(
            Entry(
                candidate.repo_id,
                candidate.sha,
                candidate.fingerprint,
                verdict_of(candidate, Stage.JUDGED),
                __version__,
                policy_digest(self.config),
                now(),
                old.targets,
            )
        )


def job_ledger(
    hub: Hub, config: BotConfig, user: str, namespace: str, publish: PublishMode, dry_run: bool
) -> JobLedger | None:
    """The ledger for a publishing job, or None (off, not publishing, or unreadable)."""
    if dry_run or publish is PublishMode.NONE or not user:
        return None
    try:
        book = open_book(hub, config, user, namespace, rebuild_lost=False)
    except (HubError, BadInput) as exc:
        log.warning("ledger not used: %s", exc)
        return None
    return JobLedger(book, config) if book is not None else None
