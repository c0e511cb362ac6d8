"""Request counters, so tests can prove e.g. that a cached download made no GET, or how many
calls of each rate-limit bucket a run made."""

from __future__ import annotations

import threading
from collections import Counter, deque


class RequestStats:
    """Per-route and per-bucket request counters (thread-safe)."""

    def __init__(self, keep: int = 10_000):
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.buckets: Counter[str] = Counter()
        self.throttles: Counter[str] = Counter()
        self.recent: deque[tuple[str, str, int]] = deque(maxlen=keep)

    def record(self, method: str, route: str, path: str, status: int) -> None:
        with self._lock:
            self.counts[(method, route)] += 1
            self.recent.append((method, path, status))

    def record_bucket(self, bucket: str, throttled: bool) -> None:
        """One request of a rate-limit bucket ("api", "resolvers", "pages"); `throttled`
        when it was answered 429 by the rate limiter."""
        with self._lock:
            self.buckets[bucket] += 1
            if throttled:
                self.throttles[bucket] += 1

    def count(self, method: str, route: str) -> int:
        with self._lock:
            return self.counts[(method, route)]

    def bucket(self, name: str) -> int:
        """Requests of a rate-limit bucket seen so far (counted whether limits are on or off)."""
        with self._lock:
            return self.buckets[name]

    def throttled(self, name: str) -> int:
        """Requests of a bucket refused with 429 by the rate limiter."""
        with self._lock:
            return self.throttles[name]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.buckets.clear()
            self.throttles.clear()
            self.recent.clear()
