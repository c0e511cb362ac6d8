"""Rebuilding a lost or corrupt ledger from the markers on the Hub (`bot ledger rebuild`; the
plan does it by itself when it finds the ledger missing or unreadable), and opening the
ledger for a run.

What is rebuilt is what the Hub proves: every repo of the bot's namespace whose card records
`unetbot.source_repo` / `source_revision` (one listing), and every PR of the bot on those
source repos with its `<!-- unetbot-source: repo@sha -->` marker. Each marked revision's
input fingerprint is read back (one `model_info` each), so a README-only commit made while
the ledger was gone still publishes nothing. Judgements are not rebuilt: the next plan judges
what it lists, as on a first run, and asks the Hub about any target the rebuilt records do
not settle. A rebuild interrupted by the run's budget keeps what it found.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.client.hub import Hub
from bot.config import BotConfig
from bot.ledger.model import Entry, Ledger, Outcome, TargetRecord, now
from bot.ledger.store import LedgerBook, LoadState, location
from bot.ledger.target_check import HubTargets
from bot.publish.state import bot_prs, target_repo
from engine.errors import BadInput, BudgetExhausted, HubRateLimited
from engine.run.variants import REPO_TARGETS, PublishTarget

log = logging.getLogger("unetbot.ledger")


def _kind_of(repo_id: str, source_repo: str, namespace: str) -> PublishTarget | None:
    """Which target a repo of the bot's namespace is, by the naming rule of bot/publish/state.py."""
    for kind in REPO_TARGETS:
        if target_repo(kind, source_repo, namespace) == repo_id:
            return kind
    return None


def rebuild(
    hub: Hub, user: str, namespace: str, history: int, sources: Iterable[str] = ()
) -> Ledger:
    """A ledger holding the publish records the Hub's markers prove (module docstring)."""
    ledger = Ledger()
    targets = HubTargets(hub, user, namespace)

    def add(
        source: str,
        kind: PublishTarget,
        revision: str,
        url: str,
        version: str = "",
        left_out: tuple[str, ...] = (),
    ) -> None:
        fingerprint = targets.fingerprint_at(source, revision)
        record = TargetRecord(
            Outcome.PUBLISHED, revision, fingerprint, version, now(), url, left_out
        )
        entry = ledger.entries.setdefault(source, Entry(source))
        entry.targets.setdefault(kind.key, []).append(record)
        entry.targets[kind.key] = entry.targets[kind.key][-history:]

    wanted = set(sources)
    try:
        for repo_id, published in sorted(targets.bot_repos().items()):
            kind = _kind_of(repo_id, published.source_repo, namespace)
            if kind is None or not published.source_revision:
                continue
            wanted.add(published.source_repo)
            add(
                published.source_repo,
                kind,
                published.source_revision,
                f"/{repo_id}",
                published.version,
                published.left_out,
            )
        for source in sorted(wanted):
            for pr in bot_prs(hub, source, user) if user else []:
                if pr.revision:
                    add(source, PublishTarget.PR, pr.revision, f"/{source}/discussions/{pr.num}")
    except (BudgetExhausted, HubRateLimited) as exc:
        log.warning("ledger rebuild stopped early (%s); keeping what was found", exc)
    log.info("ledger rebuilt: %d source repos with published targets", len(ledger.entries))
    return ledger


def open_book(
    hub: Hub, config: BotConfig, user: str, namespace: str, *, rebuild_lost: bool
) -> LedgerBook | None:
    """This run's ledger (one per Hub client, cached on it); None when the ledger is off or
    the bot has no namespace. With `rebuild_lost`, a missing or corrupt ledger is rebuilt
    from the Hub's markers first; a ledger of a newer unetbot is an error."""
    where = location(config.ledger, namespace)
    if where is None:
        return None
    key = f"ledger:{where.repo_id}"
    book = hub.session.get(key)
    if book is None:
        book = LedgerBook.load(hub, where)
        if book.state is LoadState.NEWER and rebuild_lost:
            raise BadInput(
                f"{where.repo_id}: the ledger was written by a newer unetbot; upgrade this one"
            )
        if rebuild_lost and book.state in (LoadState.MISSING, LoadState.CORRUPT):
            log.warning("%s: ledger %s; rebuilding it from the Hub", where.repo_id, book.state)
            for entry in rebuild(hub, user, namespace, where.history).entries.values():
                book.put(entry)
        hub.session[key] = book
    return book
