"""The bot's only door to the Hub: a `huggingface_hub.HfApi` plus retry with backoff.

Unattended runs meet 429s (with Retry-After) and transient 5xx on the real Hub. `call` retries
idempotent reads and the commit call (commits carry `parent_commit`, so a retried commit can
never apply twice) with exponential backoff, honouring Retry-After, within a bounded number of
attempts and a run-wide call budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from bot.settings import Settings
from engine.errors import BudgetExhausted, HubError

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
    calls: int = 0
    deadline: float | None = None  # time.monotonic() after which no new call starts
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    api: HfApi = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.api = HfApi(endpoint=self.settings.endpoint, token=self.settings.token)

    def call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run `fn(*args, **kwargs)` with retries on 429/5xx and connection errors."""
        for attempt in range(1, self.max_attempts + 1):
            if self.calls >= self.max_calls:
                raise BudgetExhausted(f"Hub call budget of {self.max_calls} spent before {what}")
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise BudgetExhausted(f"run time budget spent before {what}")
            self.calls += 1
            try:
                return fn(*args, **kwargs)
            except HfHubHTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status not in RETRY_STATUS or attempt == self.max_attempts:
                    raise
                delay = _retry_after(exc) or min(
                    self.max_delay, self.base_delay * 2 ** (attempt - 1)
                )
                log.warning("%s: HTTP %s, retry %d in %.1fs", what, status, attempt, delay)
            except (ConnectionError, OSError, httpx2.TransportError) as exc:
                if attempt == self.max_attempts:
                    raise HubError(f"{what}: connection failed ({exc})") from None
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                log.warning("%s: %s, retry %d in %.1fs", what, type(exc).__name__, attempt, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")


def _retry_after(exc: HfHubHTTPError) -> float | None:
    response = exc.response
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return min(float(value), 300.0) if value is not None else None
    except ValueError:
        return None
