"""Pacing under the Hub's rate limits: every HTTP request the bot makes is counted in its
bucket and, when the bucket's window is spent, waits for the window to reset instead of
drawing a 429.

The Hub counts requests per account in fixed windows (hub-docs `docs/hub/rate-limits.md`, five
minutes): `api` (anything under `/api/`: model info, listing, discussions, commits...) and
`resolvers` (any URL with `/resolve/`: file downloads, including every HEAD and GET that
`hf_hub_download` and `snapshot_download` make). LFS transfers count in neither. The same
account's limits are shared by every process using its token (the parallel convert jobs of
one scheduled run), so the server's word wins: each answer's `RateLimit` / `RateLimit-Policy`
headers (read with huggingface_hub's own `parse_ratelimit_headers`) reset the bucket's
remaining count and window end, and a 429's `Retry-After` closes the bucket until then.

Counting happens at the HTTP layer, in an event hook of the client huggingface_hub shares
between all its calls (`set_client_factory`), because one `hf_hub_download` is two requests
and one `snapshot_download` is one per file plus a listing: no wrapper around `HfApi` methods
could count them. A request belongs to the pacer of its (endpoint, token): requests of other
accounts in the same process (tests seeding repos as their owner) are neither paced nor
counted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import set_client_factory
from huggingface_hub.utils import parse_ratelimit_headers

# The client huggingface_hub builds by default (its request hook adds the request id and the
# offline check); not re-exported by huggingface_hub.utils, and pinned with the package.
from huggingface_hub.utils._http import default_client_factory

from engine.errors import BudgetExhausted

log = logging.getLogger("unetbot.pacing")
BUCKETS = ("api", "resolvers")


def bucket_of(path: str) -> str | None:
    """The Hub's bucket for a request path, None for requests in no bucket the bot paces
    (LFS transfers, pages). The rule of hub-docs rate-limits.md: `/resolve/` anywhere is a
    resolver call, `/api/` a Hub API call."""
    if "/resolve/" in path:
        return "resolvers"
    if path.startswith("/api/"):
        return "api"
    return None


@dataclass(frozen=True)
class RateLimits:
    """Requests per window per bucket (config `budget.*_per_window`, `budget.window_seconds`)."""

    api: int = 1000
    resolvers: int = 5000
    window: float = 300.0

    def limit(self, bucket: str) -> int:
        return self.api if bucket == "api" else self.resolvers

    @classmethod
    def of(cls, budget) -> RateLimits:
        """From the config's `budget` section (bot/config.py BudgetConfig)."""
        return cls(budget.api_per_window, budget.resolvers_per_window, budget.window_seconds)


@dataclass
class _Window:
    limit: int
    length: float
    used: int = 0
    ends: float | None = None  # clock time the current window ends; None: no window open
    remaining: int | None = None  # the server's count, when it sent one
    throttled: bool = False  # closed by a 429 (its wait may be served by the caller)


@dataclass
class Pacer:
    """Counts and paces one account's requests to one Hub (thread-safe: snapshot_download
    fetches files from a thread pool)."""

    limits: RateLimits = field(default_factory=RateLimits)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    deadline: float | None = None  # clock time after which no wait may end (the run budget)
    counts: Counter[str] = field(default_factory=Counter)
    throttles: Counter[str] = field(default_factory=Counter)
    waited: float = 0.0  # seconds spent waiting for windows to reset
    _windows: dict[str, _Window] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return sum(self.counts[b] for b in BUCKETS)

    def _window(self, bucket: str) -> _Window:
        w = self._windows.get(bucket)
        if w is None:
            w = self._windows[bucket] = _Window(self.limits.limit(bucket), self.limits.window)
        return w

    def _admit(self, w: _Window, now: float, fresh: bool) -> float:
        """0 when a request may go now (and count it), else the seconds to wait."""
        if fresh or w.ends is None or now >= w.ends:
            w.ends, w.used, w.remaining, w.throttled = now + w.length, 0, None, False
        left = w.limit - w.used if w.remaining is None else w.remaining
        if left > 0:
            w.used += 1
            if w.remaining is not None:
                w.remaining -= 1
            return 0.0
        return max(w.ends - now, 0.0)

    def before(self, bucket: str) -> None:
        """Wait until `bucket` has room, then count one request. A wait that would end after
        the run's deadline raises BudgetExhausted: the caller defers the work to the next run
        instead of failing it."""
        fresh = False
        while True:
            with self._lock:
                now = self.clock()
                wait = self._admit(self._window(bucket), now, fresh)
                if wait == 0.0:
                    self.counts[bucket] += 1
                    return
            if self.deadline is not None and now + wait > self.deadline:
                raise BudgetExhausted(
                    f"the {bucket} rate-limit window resets in {wait:.0f}s, after the run's time "
                    "budget ends; the rest is deferred to the next run"
                )
            log.info("%s rate-limit window spent: waiting %.1fs", bucket, wait)
            self.sleep(wait)
            self.waited += wait
            fresh = True  # the wait served the window out, whatever the clock says

    def after(self, bucket: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer: the server's RateLimit headers, or a 429's Retry-After."""
        info = parse_ratelimit_headers(headers)
        with self._lock:
            w = self._window(bucket)
            now = self.clock()
            if info is not None and info.resource_type == bucket:
                w.remaining = info.remaining
                w.ends = now + info.reset_in_seconds  # whole seconds, rounded up by the Hub
                if info.limit:
                    w.limit = info.limit
                if info.window_seconds:
                    w.length = float(info.window_seconds)
            if status == 429:  # closed until the Hub's word (Retry-After, else its reset)
                self.throttles[bucket] += 1
                wait = retry_after(headers)
                w.remaining, w.throttled = 0, True
                if wait is not None:
                    w.ends = now + wait
                elif info is None or info.resource_type != bucket:
                    w.ends = now + 1.0

    def forgive_throttle(self) -> None:
        """The caller just slept the wait a 429 asked for: reopen the windows that 429 closed
        (so the wait is not served twice)."""
        with self._lock:
            for w in self._windows.values():
                if w.throttled:
                    w.ends, w.throttled = None, False


def retry_after(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds (delay-seconds form), clamped at 0; None when absent or bad."""
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                wait = float(value.strip())
            except ValueError:
                return None
            return max(wait, 0.0) if math.isfinite(wait) else None
    return None


# --- the hook in huggingface_hub's shared HTTP client -------------------------------------------

_REGISTRY: dict[tuple[str, str], Pacer] = {}
_REGISTRY_LOCK = threading.Lock()
_INSTALLED = False


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _caller(authorization: str | None) -> str:
    """A digest standing for the caller's credentials (the token itself is never kept)."""
    return hashlib.sha256((authorization or "").encode()).hexdigest()


def pacer_for(
    endpoint: str,
    token: str | None,
    limits: RateLimits,
    sleep: Callable[[float], None] = time.sleep,
) -> Pacer:
    """The process-wide pacer of one account on one Hub (created on first use, with these
    limits and this sleep; later callers share it, as they share the account's limits)."""
    install()
    key = (_origin(endpoint), _caller(f"Bearer {token}" if token else None))
    with _REGISTRY_LOCK:
        pacer = _REGISTRY.get(key)
        if pacer is None:
            pacer = _REGISTRY[key] = Pacer(limits, sleep=sleep)
        return pacer


def _match(request: httpx2.Request) -> tuple[Pacer, str] | None:
    bucket = bucket_of(request.url.path)
    if bucket is None:
        return None
    key = (_origin(str(request.url)), _caller(request.headers.get("authorization")))
    pacer = _REGISTRY.get(key)
    return (pacer, bucket) if pacer is not None else None


def _on_request(request: httpx2.Request) -> None:
    found = _match(request)
    if found is not None:
        found[0].before(found[1])


def _on_response(response: httpx2.Response) -> None:
    found = _match(response.request)
    if found is not None:
        found[0].after(found[1], response.status_code, response.headers)


def _client_factory() -> httpx2.Client:
    """huggingface_hub's default client, plus the pacing hooks."""
    client = default_client_factory()
    hooks = client.event_hooks
    client.event_hooks = {
        "request": [*hooks.get("request", []), _on_request],
        "response": [*hooks.get("response", []), _on_response],
    }
    return client


def install() -> None:
    """Put the hooks in huggingface_hub's shared client (once per process)."""
    global _INSTALLED
    with _REGISTRY_LOCK:
        if not _INSTALLED:
            set_client_factory(_client_factory)
            _INSTALLED = True
