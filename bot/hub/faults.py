"""Deterministic fault injection: make chosen calls fail the way the real Hub sometimes does.

A rule matches by HTTP method and a regex searched in the raw request path, and fires on
chosen call numbers of the calls it matches (1-based, e.g. `calls: [1, 2]` = the first two
matching calls; omitted = every call). Kinds:

    {kind: status, status: 429, retry_after: 1}   answer at once, the request is not handled
    {kind: status, status: 503}                   500/502/503 likewise
    {kind: drop, after_bytes: 100}                handle the request, then cut the connection
                                                  after that many body bytes
    {kind: delay, delay: 0.5}                     wait, then handle normally

Rules come from the config file (`faults:`) or POST /admin/faults; off by default.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("unetbot.hub")
KINDS = ("status", "drop", "delay")


@dataclass
class FaultRule:
    kind: str
    method: str = "*"
    path: str = ".*"
    calls: list[int] | None = None
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    after_bytes: int = 0
    seen: int = 0
    fired: int = 0
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}, not {self.kind!r}")
        self.method, self.path = str(self.method), str(self.path)
        self.status, self.after_bytes = int(self.status), int(self.after_bytes)
        self.delay = float(self.delay)
        if self.retry_after is not None:
            self.retry_after = float(self.retry_after)
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise ValueError("fault status must be 4xx or 5xx")
        if self.delay < 0 or self.after_bytes < 0:
            raise ValueError("fault delay and after_bytes must not be negative")
        try:
            self._regex = re.compile(self.path)
        except re.error as exc:
            raise ValueError(f"fault path is not a regular expression: {exc}") from exc

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FaultRule:
        allowed = {
            "kind",
            "method",
            "path",
            "calls",
            "status",
            "retry_after",
            "delay",
            "after_bytes",
        }
        unknown = set(raw) - allowed
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        data = dict(raw)
        data.setdefault("kind", "status")
        if data.get("calls") is not None:
            data["calls"] = [int(c) for c in data["calls"]]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "calls": self.calls,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "after_bytes": self.after_bytes,
            "seen": self.seen,
            "fired": self.fired,
        }

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self._regex.search(path) is not None


class FaultInjector:
    """Holds the rules and their call counters (thread-safe, shared with the admin route)."""

    def __init__(self, rules: list[dict[str, Any]] | None = None):
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        if rules:
            self.set(rules)

    def set(self, rules: list[dict[str, Any]]) -> None:
        parsed = [FaultRule.from_dict(r) for r in rules]
        with self._lock:
            self._rules = parsed
        log.info("fault rules set: %d", len(parsed))

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_dict() for r in self._rules]

    def pick(self, method: str, path: str) -> FaultRule | None:
        """Count this call against every matching rule; return the first rule that fires."""
        chosen = None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                rule.seen += 1
                if chosen is None and (rule.calls is None or rule.seen in rule.calls):
                    rule.fired += 1
                    chosen = rule
        return chosen


class _Cut(Exception):
    """Raised from the wrapped `send` to stop the app once the connection is to be dropped."""


class FaultMiddleware:
    """ASGI middleware applying the injector's rules (admin routes are never faulted)."""

    def __init__(self, app: ASGIApp, injector: FaultInjector):
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        rule = None if path.startswith("/admin/") else self.injector.pick(scope["method"], path)
        if rule is None:
            await self.app(scope, receive, send)
            return
        log.info("fault %s fired on %s %s", rule.kind, scope["method"], path)
        if rule.kind == "delay":
            await asyncio.sleep(rule.delay)
            await self.app(scope, receive, send)
        elif rule.kind == "status":
            await self._status(rule, scope, send)
        else:
            await self._drop(rule, scope, receive, send)

    @staticmethod
    async def _status(rule: FaultRule, scope: Scope, send: Send) -> None:
        body = json.dumps({"error": f"injected fault {rule.status}"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"x-error-message", b"injected fault"),
            (b"content-length", str(len(body)).encode()),
        ]
        if rule.retry_after is not None:
            headers.append((b"retry-after", str(int(rule.retry_after)).encode()))
        await send({"type": "http.response.start", "status": rule.status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _drop(self, rule: FaultRule, scope: Scope, receive: Receive, send: Send) -> None:
        budget = rule.after_bytes

        async def cutting_send(message: Message) -> None:
            nonlocal budget
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = message.get("body", b"")
            if len(body) < budget or (
                len(body) == budget and budget > 0 and message.get("more_body")
            ):
                budget -= len(body)
                await send(message)
                return
            await send({"type": "http.response.body", "body": body[:budget], "more_body": True})
            raise _Cut

        try:
            await self.app(scope, receive, cutting_send)
        except _Cut:
            return  # the server closes a connection whose response never completed
