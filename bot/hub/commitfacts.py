"""What a commit says about its repo: card metadata, derived tags, LFS attributes.

Read from the commit's small regular files (README.md, model_index.json, config.json,
.gitattributes) and cached, since commits never change: a listing of thousands of repos or
repeated `model_info(revision=...)` calls parse nothing twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from bot.hub import cardmeta, lfs_policy, repotags
from bot.hub.model import Commit
from bot.hub.objects import ObjectStore


class Lru:
    """A small thread-safe LRU cache (handlers run in a thread pool)."""

    def __init__(self, size: int):
        self._size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)


class CommitFacts:
    def __init__(self, objects: ObjectStore):
        self.objects = objects
        self._facts = Lru(4096)
        self._cards = Lru(1024)

    def _small_file(self, commit: Commit, name: str, cap: int) -> bytes | None:
        """A regular file of at most `cap` bytes, else None (LFS files are never read)."""
        entry = commit.files.get(name)
        if entry is None or entry.lfs or entry.size > cap:
            return None
        try:
            return self.objects.read_regular(entry.oid)
        except OSError:
            return None

    def card_data(self, commit: Commit) -> dict[str, Any] | None:
        """The README's metadata (None without one), cached by the README's blob id."""
        entry = commit.files.get("README.md")
        if entry is None:
            return None
        cached = self._cards.get(entry.oid)
        if cached is not None:
            return cached[0]
        data = self._small_file(commit, "README.md", lfs_policy.REGULAR_MAX)
        card = None
        if data is not None:
            try:
                card = cardmeta.parse_card_data(data.decode("utf-8"))
            except (cardmeta.CardMetaError, UnicodeDecodeError):
                card = None
        self._cards.put(entry.oid, (card,))
        return card

    def describe(
        self, key: tuple[str, str, str], commit: Commit
    ) -> tuple[dict[str, Any] | None, repotags.RepoFacts]:
        """Card data and derived tags of a commit (cached by `key`: commits never change)."""
        cached = self._facts.get(key)
        if cached is not None:
            return cached

        def read_json(name: str) -> Any:
            data = self._small_file(commit, name, repotags.MAX_CONFIG_BYTES)
            return None if data is None else repotags.parse_small_json(data)

        card = self.card_data(commit)
        result = (card, repotags.derive(card, commit.files.keys(), read_json))
        self._facts.put(key, result)
        return result

    def gitattributes(self, commit: Commit) -> str:
        attrs = commit.files.get(".gitattributes")
        if attrs is None or attrs.lfs or attrs.size > lfs_policy.REGULAR_MAX:
            return ""
        return self.objects.read_regular(attrs.oid).decode(errors="replace")
