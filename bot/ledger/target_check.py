"""What the Hub itself says about a candidate's publish targets, asked only when the ledger's
records do not settle it (a new source, a lost ledger), at the lowest cost the Hub allows.

- Repo targets: one listing of the bot's namespace with its card data (`list_models(author=...,
  expand=cardData)`, one request per 1,000 repos, made once per run and only if needed) gives
  every published card's `unetbot.source_repo` / `source_revision`; no `model_info` per target.
- The PR target: the bot's PRs on the source repo and their markers (bot/publish/state.py
`bot_prs`).

A marker naming another revision than the one judged still means "done" when that revision
had the same input fingerprint (a README-only commit after the ledger was lost): that costs
one `model_info` of the marked revision, cached for the run. The same checks rebuild a lost
ledger (bot/ledger/rebuild.py).
"""

from __future__ import annotations

import logging

from bot.client.hub import Hub
from bot.discover.fingerprint import fingerprint_of
from bot.discover.scan import Candidate, model_info
from bot.ledger.model import Outcome, TargetRecord, now
from bot.publish.state import (
    Published,
    Target,
    bot_prs,
    check_owned,
    close_superseded_prs,
    published_from,
)
from engine import __version__
from engine.errors import HubNotFound

log = logging.getLogger("unetbot.targets")


class HubTargets:
    """The Hub's view of the bot's targets for one run (its listings and lookups cached)."""

    def __init__(self, hub: Hub, user: str, namespace: str):
        self.hub, self.user, self.namespace = hub, user, namespace
        self._repos: dict[str, Published] | None = None
        self._fingerprints: dict[tuple[str, str], str] = {}

    def bot_repos(self) -> dict[str, Published]:
        """Repo id -> what its card records, for every repo of the bot's namespace."""
        if self._repos is None:
            infos = self.hub.call(
                f"list the repos of {self.namespace}",
                lambda: list(
                    self.hub.api.list_models(author=self.namespace, expand=["sha", "cardData"])
                ),
            )
            self._repos = {info.id: published_from(info) for info in infos}
        return self._repos

    def fingerprint_at(self, repo_id: str, revision: str) -> str:
        """The input fingerprint of `repo_id` at `revision` ("" if it is gone)."""
        key = (repo_id, revision)
        if key not in self._fingerprints:
            try:
                info = model_info(self.hub, repo_id, revision)
                self._fingerprints[key] = fingerprint_of(info)
            except HubNotFound:
                self._fingerprints[key] = ""
        return self._fingerprints[key]

    def _same_inputs(self, candidate: Candidate, revision: str) -> bool:
        if not revision or not candidate.fingerprint:
            return False
        return self.fingerprint_at(candidate.repo_id, revision) == candidate.fingerprint

    def check(self, candidate: Candidate, target: Target) -> TargetRecord:
        """PUBLISHED (with the revision it was made from) or PENDING, from the Hub's markers.
        A repo target whose card records another source raises PolicySkipped."""
        if target.kind.is_pr:
            return self._check_pr(candidate)
        published = self.bot_repos().get(target.repo_id)
        check_owned(published, target, candidate.repo_id)
        revision = published.source_revision if published else ""
        # Done when the card holds this source and nothing left out is worth a retry.
        complete = published is not None and published.done_for(revision)
        if complete and (revision == candidate.sha or self._same_inputs(candidate, revision)):
            return self._record(Outcome.PUBLISHED, revision, candidate.fingerprint)
        return self._record(Outcome.PENDING, candidate.sha, candidate.fingerprint)

    def _check_pr(self, candidate: Candidate) -> TargetRecord:
        prs = bot_prs(self.hub, candidate.repo_id, self.user)
        url = f"{self.hub.settings.endpoint}/{candidate.repo_id}/discussions/"
        exact = next((p for p in prs if p.revision == candidate.sha), None)
        if exact is not None:
            stale = tuple(p.num for p in prs if p.status == "open" and p.revision != exact.revision)
            if stale:  # the crash-window repair of bot/job/hub_source.py pending_targets, done here
                # too
                close_superseded_prs(self.hub, candidate.repo_id, stale, candidate.sha)
            return self._record(
                Outcome.PUBLISHED, candidate.sha, candidate.fingerprint, f"{url}{exact.num}"
            )
        for pr in prs:
            if self._same_inputs(candidate, pr.revision):
                return self._record(
                    Outcome.PUBLISHED, pr.revision, candidate.fingerprint, f"{url}{pr.num}"
                )
        return self._record(Outcome.PENDING, candidate.sha, candidate.fingerprint)

    @staticmethod
    def _record(status: Outcome, revision: str, fingerprint: str, url: str = "") -> TargetRecord:
        return TargetRecord(status, revision, fingerprint, __version__, now(), url)
