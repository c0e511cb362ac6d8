"""Where the ledger lives and how concurrent runs share it.

The ledger is `ledger.jsonl` (bot/ledger/model.py) in a dataset repo of the bot's namespace
(config `ledger.repo`, default `{namespace}/unetbot-ledger`), so it needs nothing but the
bot's Hub token, survives any runner, and anyone can read what the bot knows.

Reading costs two resolver requests (the HEAD and GET of `hf_hub_download`, never served
from the cache); the commit it was read at comes back in the cache path
(`.../snapshots/<commit>/ledger.jsonl`, the cache layout huggingface_hub documents). Every
write is one commit with `parent_commit` set to the commit read: when another run wrote in
between, the Hub answers 412, and the writer re-reads, merges its own changes into what it
found (bot/ledger/model.py `merge_entries`) and tries again. Two runs can therefore never clobber
each other, and the one that loses the race loses nothing but a retry.

A missing ledger reads as empty (`MISSING`), an unreadable one likewise but flagged
`CORRUPT` (the plan then rebuilds it from the Hub's markers); a ledger written by a newer
unetbot (`NEWER`) is never overwritten.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from huggingface_hub import CommitOperationAdd, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from bot.client.hub import Hub
from bot.config import LedgerConfig
from bot.ledger.model import (
    FILENAME,
    SCHEMA_VERSION,
    Cursor,
    Entry,
    Ledger,
    TargetRecord,
    merge_entries,
    merge_records,
    now,
    parse_ledger,
    schema_of,
)
from engine.errors import BadInput, HubConflict, HubNotFound

log = logging.getLogger("unetbot.ledger")
SAVE_ATTEMPTS = 8
_COMMIT = re.compile(r"[0-9a-f]{40}")
CARD = """---
pretty_name: unetbot ledger
tags: [unetbot]
---

# unetbot ledger

What the unetbot Hub bot judged and published: one line per source repo in `ledger.jsonl`.
It is a cache: if it is lost or corrupt, the bot rebuilds it from the markers its pull
requests and model cards carry (`bot ledger rebuild`).
"""


class LoadState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    CORRUPT = "corrupt"
    NEWER = "newer"  # written by a newer unetbot: read-only for this one


@dataclass(frozen=True)
class Location:
    repo_id: str
    private: bool = False
    history: int = 4


def location(config: LedgerConfig, namespace: str) -> Location | None:
    """The ledger repo for this config and bot namespace; None when there is none to use."""
    if not config.enabled:
        return None
    if "/" in config.repo:
        return Location(config.repo, config.private, config.history)
    if not namespace:
        return None
    return Location(f"{namespace}/{config.repo}", config.private, config.history)


@dataclass
class Snapshot:
    ledger: Ledger
    parent: str | None  # the commit read; None when the repo does not exist
    state: LoadState


def read(hub: Hub, where: Location) -> Snapshot:
    """The ledger at the head of its repo (never raises for a missing or corrupt file)."""
    try:
        local = hub.call(f"read the ledger {where.repo_id}", _download, hub, where)
    except HubNotFound:
        return Snapshot(Ledger(), _head(hub, where), LoadState.MISSING)
    path = Path(local)
    commit = path.parent.name if _COMMIT.fullmatch(path.parent.name) else _head(hub, where)
    data = path.read_bytes()
    if schema_of(data) > SCHEMA_VERSION:
        log.warning("%s: written by a newer unetbot; not used", where.repo_id)
        return Snapshot(Ledger(), commit, LoadState.NEWER)
    try:
        return Snapshot(parse_ledger(data, f"{where.repo_id}/{FILENAME}"), commit, LoadState.OK)
    except BadInput as exc:
        log.warning("%s", exc)
        return Snapshot(Ledger(), commit, LoadState.CORRUPT)


def _download(hub: Hub, where: Location) -> str:
    """Download the ledger file, never a cached copy: hf_hub_download serves one when its HEAD
    fails (any HTTP error, the repo deleted included), and a stale ledger's commit is no
    parent. With `force_download` the HEAD's error arrives wrapped in a ValueError; it is
    unwrapped so that the client retries or translates it like any other."""
    try:
        return hf_hub_download(
            where.repo_id,
            FILENAME,
            repo_type="dataset",
            endpoint=hub.settings.endpoint,
            token=hub.settings.token,
            cache_dir=hub.settings.cache_dir,
            force_download=True,
        )
    except ValueError as exc:
        if isinstance(exc.__cause__, HfHubHTTPError):
            raise exc.__cause__ from None
        raise


def _head(hub: Hub, where: Location) -> str | None:
    try:
        info = hub.call(f"dataset_info {where.repo_id}", hub.api.dataset_info, where.repo_id)
    except HubNotFound:
        return None
    return info.sha


def write(hub: Hub, where: Location, ledger: Ledger, parent: str | None) -> str:
    """Commit the ledger on top of `parent` (HubConflict if the head moved); returns the new
    head. A missing repo is created first, with a card saying what it is."""
    operations = [CommitOperationAdd(FILENAME, ledger.to_jsonl())]
    if parent is None:
        hub.call(
            f"create {where.repo_id}",
            hub.api.create_repo,
            where.repo_id,
            repo_type="dataset",
            private=where.private,
            exist_ok=True,
        )
        parent = _head(hub, where)
        operations.append(CommitOperationAdd("README.md", CARD.encode()))
    info = hub.call(
        f"write the ledger {where.repo_id}",
        hub.api.create_commit,
        where.repo_id,
        operations,
        commit_message=f"unetbot ledger: {len(ledger.entries)} repos",
        repo_type="dataset",
        parent_commit=parent,
    )
    return info.oid


@dataclass
class LedgerBook:
    """One run's view of the ledger: what was read, what this run changed, and a save that
    merges those changes into whatever another run wrote meanwhile."""

    where: Location
    ledger: Ledger
    parent: str | None
    state: LoadState
    writable: bool = True
    dirty: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    cursor_moved: bool = False

    @classmethod
    def load(cls, hub: Hub, where: Location) -> LedgerBook:
        snap = read(hub, where)
        writable = bool(hub.settings.token) and snap.state is not LoadState.NEWER
        return cls(where, snap.ledger, snap.parent, snap.state, writable)

    def entry(self, repo_id: str) -> Entry | None:
        return self.ledger.entries.get(repo_id)

    def put(self, entry: Entry) -> None:
        self.ledger.entries[entry.repo_id] = entry
        self.dirty.add(entry.repo_id)
        self.removed.discard(entry.repo_id)

    def add_target(self, repo_id: str, kind_key: str, record: TargetRecord) -> None:
        entry = self.entry(repo_id) or Entry(repo_id)
        records = entry.targets.get(kind_key, [])
        entry.targets[kind_key] = merge_records(records, [record], self.where.history)
        self.put(entry)

    def forget(self, repo_id: str) -> None:
        if self.ledger.entries.pop(repo_id, None) is not None:
            self.removed.add(repo_id)
            self.dirty.discard(repo_id)

    def set_cursor(self, cursor: Cursor | None) -> None:
        if cursor != self.ledger.cursor:
            self.ledger.cursor = cursor
            self.cursor_moved = True

    @property
    def changed(self) -> bool:
        return bool(self.dirty or self.removed or self.cursor_moved)

    def save(self, hub: Hub) -> bool:
        """Write this run's changes (no call when there are none); True when written."""
        if not self.changed:
            return False
        if not self.writable:
            log.info("%s: read-only; %d change(s) not saved", self.where.repo_id, len(self.dirty))
            return False
        mine = {k: self.ledger.entries[k] for k in self.dirty if k in self.ledger.entries}
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            self.ledger.updated = now()
            try:
                self.parent = write(hub, self.where, self.ledger, self.parent)
            except HubConflict:
                if attempt == SAVE_ATTEMPTS:
                    raise
                log.info("%s: written by another run meanwhile; merging", self.where.repo_id)
                self._merge_into_latest(hub, mine)
                hub.sleep(random.uniform(0.1, 0.5) * attempt)  # spread racing writers
                continue
            self.dirty.clear()
            self.removed.clear()
            self.cursor_moved = False
            return True
        raise AssertionError("unreachable")

    def _merge_into_latest(self, hub: Hub, mine: dict[str, Entry]) -> None:
        snap = read(hub, self.where)
        if snap.state is LoadState.NEWER:
            self.writable = False
            raise BadInput(f"{self.where.repo_id}: a newer unetbot took over the ledger")
        base = snap.ledger
        for repo_id, entry in mine.items():
            merged = merge_entries(base.entries.get(repo_id), entry, self.where.history)
            if merged is not None:
                base.entries[repo_id] = merged
        for repo_id in self.removed:
            base.entries.pop(repo_id, None)
        if self.cursor_moved:
            base.cursor = self.ledger.cursor
        self.ledger, self.parent = base, snap.parent
