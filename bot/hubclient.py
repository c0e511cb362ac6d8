"""The bot's only door to the Hub: a `huggingface_hub.HfApi` plus retries, budgets and the
translation of every Hub failure into the project's typed errors.

Unattended runs meet 429s (with Retry-After / RateLimit headers) and transient 5xx on the real
Hub. `call` retries only what a retry can fix: 429, 5xx and transport errors (dropped
connections, timeouts), with exponential backoff, honouring the server's wait (clamped to
[0, `max_wait`]), within a bounded number of attempts and a run-wide call budget. The commit call
is retried too: commits carry `parent_commit` and every attempt first checks whether the commit
already landed (bot/publish.py), so a retry never applies twice.

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
from typing import TypeVar

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
from engine.fsio import local_io_error

log = logging.getLogger("unetbot.hub.client")
T = TypeVar("T")
RETRY_STATUS = {429, 500, 502, 503, 504}


def hub_for(settings: Settings, budget_calls: int, budget_minutes: float | None) -> Hub:
    """A Hub client bounded by the run's call and time budgets (config `scan.max_calls`,
    `budget.max_minutes`)."""
    deadline = time.monotonic() + budget_minutes * 60 if budget_minutes else None
    return Hub(settings, max_calls=budget_calls, deadline=deadline)


@dataclass
class Hub:
    settings: Settings
    max_calls: int = 10_000
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_wait: float = 300.0  # longest server-requested wait honoured (Retry-After, RateLimit)
    calls: int = 0
    deadline: float | None = None  # time.monotonic() after which no new call starts
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    api: HfApi = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.api = HfApi(endpoint=self.settings.endpoint, token=self.settings.token)

    def call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run `fn(*args, **kwargs)`, retrying 429/5xx and transport errors; every other failure
        is raised as a typed `engine.errors` exception with a redacted message."""
        for attempt in range(1, self.max_attempts + 1):
            if self.calls >= self.max_calls:
                raise BudgetExhausted(f"Hub call budget of {self.max_calls} spent before {what}")
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise BudgetExhausted(f"run time budget spent before {what}")
            self.calls += 1
            backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
            try:
                return fn(*args, **kwargs)
            except HfHubHTTPError as exc:
                status = _status(exc)
                if status not in RETRY_STATUS:
                    raise translate(what, exc) from None
                if attempt == self.max_attempts:
                    raise translate(what, exc) from None
                delay = self._server_wait(exc) if status == 429 else None
                delay = backoff if delay is None else delay
                log.warning("%s: HTTP %s, retry %d in %.1fs", what, status, attempt, delay)
            except (ConnectionError, httpx2.TransportError) as exc:
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
        raise AssertionError("unreachable")

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
