"""Rate limits as the real Hub applies them (hub-docs `docs/hub/rate-limits.md`).

Three buckets, each counted over fixed windows (5 minutes on the Hub):
- `api`: the Hub API (`/api/...`: search, model info, repo creation, discussions...);
- `resolvers`: any URL with a `/resolve/` segment (file downloads);
- `pages`: everything else a browser would load (this server has no pages, so only its 404s).
Git/LFS transfer URLs and this server's own `/admin/` routes are in no bucket.

Limits per window, by plan (the documented tiers, September 2025): anonymous callers (per IP)
500 / 3,000 / 100, free accounts 1,000 / 5,000 / 200, PRO 2,500 / 12,000 / 400. An account's
limit is its own whichever token it uses (for organizations the docs apply limits to each
member), so callers are keyed by user, or by IP address when anonymous.

Headers (the IETF draft `draft-ietf-httpapi-ratelimit-headers` version 9, as the Hub sends
them on every answer of a limited bucket, and as huggingface_hub 2.4
`utils/_http.py::parse_ratelimit_headers` reads them):

    RateLimit: "api";r=<remaining>;t=<seconds until the window resets>
    RateLimit-Policy: "fixed window";"api";q=<limit>;w=<window seconds>

A refused call is answered 429 with those headers (r=0) and `Retry-After: <t>`; the client's
`http_backoff` then sleeps t+1 seconds before retrying (pagination, downloads), and
`hf_raise_for_status` reports "Retry after t seconds (0/q requests remaining in current w s
window)". Limits are off unless the hub config has a `rate_limits` mapping:

    rate_limits:
      window: 300                  # seconds
      anonymous: {api: 500, resolvers: 3000, pages: 100}
      free: {api: 1000}            # omitted values keep the Hub's
      pro: {api: 2500}
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BUCKETS = ("api", "resolvers", "pages")
TIERS = ("anonymous", "free", "pro")
HUB_WINDOW = 300
HUB_LIMITS: dict[str, dict[str, int]] = {
    "anonymous": {"api": 500, "resolvers": 3000, "pages": 100},
    "free": {"api": 1000, "resolvers": 5000, "pages": 200},
    "pro": {"api": 2500, "resolvers": 12000, "pages": 400},
}


def bucket_of(path: str) -> str | None:
    """The bucket a raw request path counts against, or None (LFS transfers, /admin/)."""
    if "/resolve/" in path:
        return "resolvers"
    if path.startswith("/api/"):
        return "api"
    if path.startswith(("/admin/", "/lfs/")) or ".git/info/lfs/" in path:
        return None
    return "pages"


@dataclass(frozen=True)
class Decision:
    bucket: str
    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until the window resets (rounded up)
    window: int

    def headers(self) -> dict[str, str]:
        out = {
            "RateLimit": f'"{self.bucket}";r={self.remaining};t={self.reset}',
            "RateLimit-Policy": f'"fixed window";"{self.bucket}";q={self.limit};w={self.window}',
        }
        if not self.allowed:
            out["Retry-After"] = str(self.reset)
        return out


@dataclass
class RateLimiter:
    """Fixed windows per (caller, bucket): a window starts at the caller's first call in it."""

    window: int = HUB_WINDOW
    limits: dict[str, dict[str, int]] = field(default_factory=lambda: dict(HUB_LIMITS))
    clock: Callable[[], float] = time.monotonic
    _windows: dict[tuple[str, str], list[float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, raw: Any) -> RateLimiter | None:
        """None (limits off) without a `rate_limits` mapping; ValueError on a bad one."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ValueError("rate_limits must be a mapping")
        unknown = set(raw) - {"window", *TIERS}
        if unknown:
            raise ValueError(f"rate_limits: unknown keys {sorted(unknown)}")
        window = int(raw.get("window", HUB_WINDOW))
        if window < 1:
            raise ValueError("rate_limits.window must be at least 1 second")
        limits = {tier: dict(values) for tier, values in HUB_LIMITS.items()}
        for tier in TIERS:
            given = raw.get(tier) or {}
            if not isinstance(given, dict) or set(given) - set(BUCKETS):
                raise ValueError(f"rate_limits.{tier} must map {BUCKETS} to numbers")
            limits[tier].update({b: int(v) for b, v in given.items()})
        return cls(window=window, limits=limits)

    def hit(self, caller: str, tier: str, bucket: str) -> Decision:
        """Count one call of `caller` (user or IP) in `bucket`, or refuse it when the window's
        quota is spent (a refused call does not count)."""
        limit = self.limits[tier][bucket]
        now = self.clock()
        key = (caller, bucket)
        with self._lock:
            if len(self._windows) > 50_000:
                self._prune(now)
            state = self._windows.get(key)
            if state is None or now >= state[0] + self.window:
                state = [now, 0]
                self._windows[key] = state
            allowed = state[1] < limit
            if allowed:
                state[1] += 1
            remaining = max(0, limit - int(state[1]))
            reset = max(1, math.ceil(state[0] + self.window - now))
        return Decision(bucket, allowed, limit, remaining, reset, self.window)

    def _prune(self, now: float) -> None:
        expired = [k for k, (start, _) in self._windows.items() if now >= start + self.window]
        for k in expired:
            del self._windows[k]
