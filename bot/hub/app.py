"""The embedded Hub's ASGI application: dispatch, body limits, rate limits, error mapping.

Handlers live in routes_repo.py, routes_list.py, routes_files.py, routes_commit.py,
routes_discussions.py and routes_admin.py. For each request, in order: match the route,
identify the caller (401 for an unknown token), apply the rate limit of the path's bucket
(429), refuse anonymous callers of token routes (401) before any body byte is read, read the
body up to its cap while it streams (413 past it), then run the handler: plain functions in a
worker thread (they fsync), streaming handlers (LFS upload) on the event loop. Any failure
becomes a typed answer; the connection is never dropped by an error.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.hub import (
    routes_admin,
    routes_commit,
    routes_discussions,
    routes_files,
    routes_list,
    routes_repo,
)
from bot.hub.errors import HttpError, NotFound, PayloadTooLarge, TooManyRequests, Unauthorized
from bot.hub.faults import FaultMiddleware
from bot.hub.http import Ctx, Route, error_response, json_response
from bot.hub.ratelimit import Decision, bucket_of
from bot.hub.state import HubState, build_state, load_config
from engine.errors import LocalIOError

__all__ = ["HubApp", "HubState", "build_app", "build_state", "load_config"]
log = logging.getLogger("unetbot.hub")
ROUTES: list[Route] = [
    *routes_admin.ROUTES,
    *routes_list.ROUTES,
    *routes_repo.ROUTES,
    *routes_discussions.ROUTES,
    *routes_commit.ROUTES,
    *routes_files.ROUTES,
]
_UNSAFE_HEADER_BYTES = re.compile(rb"[^\x20-\x7e\t]")


async def read_body(request: Request, cap: int) -> bytearray:
    """The request body, counted while it streams: 413 as soon as it passes `cap`, whether
    or not a Content-Length was sent. What is left unread is drained by the server."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > cap:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {cap} bytes")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > cap:
            raise PayloadTooLarge(f"request body exceeds the limit of {cap} bytes")
        body += chunk
    return body


def _sanitize_headers(message: Message) -> None:
    """Last guard: no header leaves with bytes h11 would refuse (it drops the connection)."""
    message["headers"] = [
        (k, _UNSAFE_HEADER_BYTES.sub(b"?", v).strip()) for k, v in message.get("headers", [])
    ]


class HubApp:
    def __init__(self, state: HubState):
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        raw_path = raw_path.split("?", 1)[0]
        method = scope["method"]
        name, extra = "unknown", {}  # extra: rate-limit headers, sent with any answer
        try:
            rt, params = self._match(method, raw_path)
            name = rt.name if rt else name
            response = await self._handle(rt, params, request, raw_path, extra)
        except HttpError as err:
            response = error_response(err)
        except ClientDisconnect:
            response = error_response(HttpError("client disconnected", status=400))
        except LocalIOError as err:
            log.error("storage error on %s %s: %s", method, raw_path, err)
            response = error_response(HttpError(str(err), status=507))
        except Exception:
            log.exception("unhandled error on %s %s", method, raw_path)
            response = json_response({"error": "internal server error"}, 500)
        await self._respond(response, scope, receive, send, method, name, raw_path, extra)

    @staticmethod
    def _match(method: str, raw_path: str) -> tuple[Route | None, dict[str, str]]:
        for rt in ROUTES:
            params = rt.match(method, raw_path)
            if params is not None:
                return rt, params
        return None, {}

    async def _handle(
        self,
        rt: Route | None,
        params: dict[str, str],
        request: Request,
        raw_path: str,
        extra: dict[str, str],
    ) -> Any:
        """The response to one request; raises HttpError for refusals."""
        hub = self.state
        bucket = bucket_of(raw_path)
        try:
            who = hub.accounts.principal(request.headers.get("authorization"))
        except Unauthorized:
            if bucket is not None:
                hub.stats.record_bucket(bucket, throttled=False)
            raise
        if bucket is not None:
            decision = self._rate_limit(bucket, who, request)
            hub.stats.record_bucket(bucket, throttled=decision is not None and not decision.allowed)
            if decision is not None:
                extra.update(decision.headers())
                if not decision.allowed:
                    raise TooManyRequests(
                        f"you have reached your '{bucket}' rate limit: {decision.limit} requests"
                        f" per {decision.window} s; retry after {decision.reset} s"
                    )
        if rt is None:
            raise NotFound("Not Found")
        if rt.token and who is None:
            raise Unauthorized("You must be authenticated (a token is required)")
        ctx = Ctx(request=request, hub=hub, params=params, who=who)
        if who is not None:
            log.debug("%s %s by token %s (%s)", request.method, rt.name, who.token_id, who.role)
        if rt.stream:
            return await rt.handler(ctx)  # type: ignore[misc]
        if request.method not in ("GET", "HEAD"):
            ctx.body = await read_body(request, hub.body_caps[rt.body])
        return await run_in_threadpool(rt.handler, ctx)

    def _rate_limit(self, bucket: str, who: Any, request: Request) -> Decision | None:
        limiter = self.state.rate_limiter
        if limiter is None:
            return None
        if who is None:
            caller, tier = f"ip:{request.client.host if request.client else '?'}", "anonymous"
        else:
            caller, tier = f"user:{who.user}", who.plan
        return limiter.hit(caller, tier, bucket)

    async def _respond(
        self,
        response: Response,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: str,
        name: str,
        raw_path: str,
        extra: dict[str, str],
    ) -> None:
        recorded = False

        async def send_tracking(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                ]
                _sanitize_headers(message)
                if not recorded:
                    # Counted before the client can see the response, so a test that reads
                    # the stats right after a call never races the server; the status is the
                    # one sent (FileResponse turns 200 into 206 for a Range).
                    self.state.stats.record(method, name, raw_path, message["status"])
                    recorded = True
            await send(message)

        try:
            await response(scope, receive, send_tracking)
        finally:
            if not recorded:  # the response failed before it started
                self.state.stats.record(method, name, raw_path, response.status_code)


def build_app(state: HubState) -> ASGIApp:
    """The full ASGI stack: fault injection outside, the Hub inside."""
    return FaultMiddleware(HubApp(state), state.faults)
