"""The bot's only door to the Hub: a `huggingface_hub.HfApi` plus retries, budgets and the
translation of every Hub failure into the project's typed errors.

Unattended runs meet 429s (with Retry-After / RateLimit headers) and transient 5xx on the real
Hub. Every HTTP request is paced under the account's rate limits first (bot/client/pacing.py), so a
429 is the exception. `call` retries only what a retry can fix: 5xx and transport errors
(dropped connections, timeouts) with exponential backoff within a bounded number of attempts,
and 429s by waiting what the server asked (clamped to [0, `max_wait`]) for as long as the run's
time budget allows (`max_rate_wait` at most per call): a 429 is never a failed repo, it is a
wait, or, past the deadline, a spent budget (BudgetExhausted: the work is deferred to the next
run). The run-wide budget counts HTTP requests (API + resolver) as the Hub does. The commit call
is retried too: commits carry `parent_commit` and every attempt first checks whether the commit
already landed (bot/publish/commit.py), so a retry never applies twice.

Everything else becomes an `engine.errors` exception right here, its message redacted: HubNotFound
(404, gated-and-invisible, missing revision or file), HubAccessDenied (401/403, gated), HubConflict
(409, 412 stale parent), HubRateLimited (429 after retries), HubError (the rest, exit 5); local OS
failures while downloading (disk full, permission) become LocalIOError, never retried.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import parse_ratelimit_headers

from bot.client.pacing import Pacer, RateLimits, pacer_for
from bot.log import redact
from bot.settings import Settings
from engine.errors import (
    BadInput,
    BudgetExhausted,
    HubAccessDenied,
    HubConflict,
    HubError,
    HubNotFound,
    HubRateLimited,
    LocalIOError,
)
from engine.formats.fsio import local_io_error

log = logging.getLogger("unetbot.hub.client")
T = TypeVar("T")
RETRY_STATUS = {429, 500, 502, 503, 504}


def hub_for(
    settings: Settings,
    budget_calls: int,
    budget_minutes: float | None,
    limits: RateLimits | None = None,
) -> Hub:
    """A Hub client bounded by the run's call and time budgets (config `scan.max_calls`,
    `budget.max_minutes`), paced under `limits` (default: a free account's)."""
    deadline = time.monotonic() + budget_minutes * 60 if budget_minutes else None
    return Hub(settings, max_calls=budget_calls, deadline=deadline, limits=limits or RateLimits())


@dataclass
class Hub:
    settings: Settings
    max_calls: int = 10_000
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_wait: float = 300.0  # longest server-requested wait honoured (Retry-After, RateLimit)
    max_rate_wait: float = 1800.0  # total 429 waiting per call before it counts as a failure
    calls: int = 0  # attempts made through `call`
    deadline: float | None = None  # time.monotonic() after which no new call starts
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    limits: RateLimits = field(default_factory=RateLimits)
    api: HfApi = field(init=False, repr=False)
    pacer: Pacer = field(init=False, repr=False)
    # Per-run state other modules keep with this client (the ledger book of bot/ledger_store).
    session: dict[str, Any] = field(default_factory=dict, repr=False)
    _baseline: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.api = HfApi(endpoint=self.settings.endpoint, token=self.settings.token)
        self.pacer = pacer_for(self.settings.endpoint, self.settings.token, self.limits, self.sleep)
        self.pacer.deadline = self.deadline  # the newest client's run budget governs waits
        self._baseline = self.pacer.total

    @property
    def requests(self) -> int:
        """HTTP requests (API + resolver) this client's account made since it was created."""
        return self.pacer.total - self._baseline

    def spent(self) -> int:
        """What the run budget counts: HTTP requests to the Hub (a download served from the
        local cache costs nothing), as the Hub's rate limits count them."""
        return self.requests

    def can_spend(self, calls: int) -> bool:
        """Whether `calls` more requests fit in the run's call and time budgets."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            return False
        return self.spent() + calls <= self.max_calls

    def call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run `fn(*args, **kwargs)`, retrying 429/5xx and transport errors; every other failure
        is raised as a typed `engine.errors` exception with a redacted message."""
        attempt, throttled = 0, 0.0
        while True:
            if self.spent() >= self.max_calls:
                raise BudgetExhausted(f"Hub call budget of {self.max_calls} spent before {what}")
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise BudgetExhausted(f"run time budget spent before {what}")
            self.calls += 1
            backoff = min(self.max_delay, self.base_delay * 2**attempt)
            try:
                return fn(*args, **kwargs)
            except HfHubHTTPError as exc:
                status = _status(exc)
                if status == 429:
                    delay = self._server_wait(exc)
                    delay = backoff if delay is None else delay
                    throttled += delay
                    self._wait_throttled(what, exc, delay, throttled)
                    continue
                attempt += 1
                if status not in RETRY_STATUS or attempt == self.max_attempts:
                    raise translate(what, exc) from None
                delay = backoff
                log.warning("%s: HTTP %s, retry %d in %.1fs", what, status, attempt, delay)
            except (ConnectionError, httpx2.TransportError) as exc:
                attempt += 1
                if attempt == self.max_attempts:
                    raise HubError(redact(f"{what}: connection failed ({exc})")) from None
                delay = backoff
                log.warning("%s: %s, retry %d in %.1fs", what, type(exc).__name__, attempt, delay)
            except HubError:
                raise  # already typed (a nested call)
            except OSError as exc:  # local: the download cache's disk, not the network
                raise local_io_error(exc.filename or what, exc) or LocalIOError(
                    redact(f"{what}: local I/O error ({exc})")
                ) from None
            except HFValidationError as exc:
                raise BadInput(redact(f"{what}: {exc}")) from None
            self.sleep(delay)

    def _wait_throttled(self, what: str, exc: HfHubHTTPError, delay: float, total: float) -> None:
        """Serve a 429's wait, or give up on it: past `max_rate_wait` the Hub is refusing for
        good (HubRateLimited), past the run's deadline the work is deferred (BudgetExhausted)."""
        if total > self.max_rate_wait:
            raise translate(what, exc) from None
        if self.deadline is not None and time.monotonic() + delay > self.deadline:
            raise BudgetExhausted(
                f"{what}: rate limited; waiting {delay:.0f}s would pass the run's time budget, "
                "so the rest is deferred to the next run"
            )
        log.warning("%s: HTTP 429, waiting %.1fs as the Hub asked", what, delay)
        self.sleep(delay)
        self.pacer.forgive_throttle()

    def _server_wait(self, exc: HfHubHTTPError) -> float | None:
        """Seconds the server asked to wait (RateLimit reset or Retry-After), clamped."""
        headers = exc.response.headers if exc.response is not None else {}
        info = parse_ratelimit_headers(headers)
        wait: float | None = None
        if info is not None and info.remaining == 0:
            wait = float(info.reset_in_seconds)
        else:
            try:
                wait = float(headers.get("Retry-After", ""))
            except ValueError:
                wait = None
        if wait is None or not math.isfinite(wait):
            return None
        return min(max(wait, 0.0), self.max_wait)


def _status(exc: HfHubHTTPError) -> int | None:
    return exc.response.status_code if exc.response is not None else None


def translate(what: str, exc: HfHubHTTPError) -> HubError:
    """The typed error for a Hub HTTP failure; the message says what failed, redacted."""
    status = _status(exc)
    server = getattr(exc, "server_message", None) or ""
    detail = redact(f"{what}: HTTP {status}{f' ({server})' if server else ''}")
    if isinstance(exc, GatedRepoError) or status == 403:
        return HubAccessDenied(f"{detail}: no access (gated repo or token without the rights)")
    if isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError | RemoteEntryNotFoundError):
        return HubNotFound(f"{detail}: not found (or private and invisible to this token)")
    if status == 404:
        return HubNotFound(f"{detail}: not found")
    if status == 401:
        return HubAccessDenied(f"{detail}: the token is missing or invalid")
    if status in (409, 412):
        return HubConflict(f"{detail}: another write raced this one; the next run retries")
    if status == 429:
        return HubRateLimited(f"{detail}: rate limited after retries; the next run resumes")
    return HubError(detail)
