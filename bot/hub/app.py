"""The embedded Hub's ASGI application: server state, dispatch, error mapping, statistics.

Handlers live in routes_repo.py, routes_files.py, routes_discussions.py and routes_admin.py.
Non-streaming handlers are plain functions run in a worker thread (they fsync), after the
request body was read; streaming handlers (LFS upload) are async and read the body themselves.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.hub import routes_admin, routes_discussions, routes_files, routes_repo
from bot.hub.auth import Accounts, UrlSigner
from bot.hub.discussions import Discussions
from bot.hub.faults import FaultInjector, FaultMiddleware
from bot.hub.http import Ctx, Route, error_response, json_response
from bot.hub.storage import HubError, ObjectStore, RepoStore

log = logging.getLogger("unetbot.hub")
DEFAULT_MAX_FILE_SIZE = 50 * 1024**3
MAX_BODY = 256 * 1024**2  # JSON / NDJSON bodies; file contents above 10 MiB go through LFS
ROUTES: list[Route] = [
    *routes_admin.ROUTES,
    *routes_repo.ROUTES,
    *routes_discussions.ROUTES,
    *routes_files.ROUTES,
]


class RequestStats:
    """Per-route request counters, so tests can prove e.g. that a cached download made no GET."""

    def __init__(self, keep: int = 10_000):
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.recent: deque[tuple[str, str, int]] = deque(maxlen=keep)

    def record(self, method: str, route: str, path: str, status: int) -> None:
        with self._lock:
            self.counts[(method, route)] += 1
            self.recent.append((method, path, status))

    def count(self, method: str, route: str) -> int:
        with self._lock:
            return self.counts[(method, route)]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.recent.clear()


@dataclass
class HubState:
    root: Path
    repos: RepoStore
    discussions: Discussions
    accounts: Accounts
    signer: UrlSigner
    faults: FaultInjector
    token: str  # a write token, for in-process callers only; never logged
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    page_size: int = 1000
    stats: RequestStats = field(default_factory=RequestStats)


def load_config(config: Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    data = yaml.safe_load(Path(config).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{config}: hub config must be a YAML mapping")
    return data


def build_state(root: Path, config: Path | None = None) -> HubState:
    """Open (or initialise) a root: storage, accounts from config or the local token."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config)
    if cfg.get("tokens"):
        accounts, token = Accounts.from_config(cfg)
    else:
        accounts, token = Accounts.local(root)
    max_size = int(cfg.get("max_file_size", DEFAULT_MAX_FILE_SIZE))
    objects = ObjectStore(root)
    repos = RepoStore(root, objects, max_size)
    return HubState(
        root=root,
        repos=repos,
        discussions=Discussions(repos),
        accounts=accounts,
        signer=UrlSigner(root, float(cfg.get("lfs_url_ttl", 3600))),
        faults=FaultInjector(cfg.get("faults") or []),
        token=token,
        max_file_size=max_size,
        page_size=int(cfg.get("list_page_size", 1000)),
    )


class HubApp:
    """Dispatch on the raw path, authenticate, run the handler, map errors to typed answers."""

    def __init__(self, state: HubState):
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        raw_path = raw_path.split("?", 1)[0]
        method = scope["method"]
        name = "unknown"
        try:
            response = None
            for rt in ROUTES:
                params = rt.match(method, raw_path)
                if params is not None:
                    name = rt.name
                    response = await self._run(rt, request, params)
                    break
            if response is None:
                response = error_response(HubError("Not Found", status=404))
        except HubError as err:
            response = error_response(err)
        except Exception:
            log.exception("unhandled error on %s %s", method, raw_path)
            response = json_response({"error": "internal server error"}, 500)
        recorded = False

        async def send_tracking(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                # Counted before the client can see the response, so a test that reads the
                # stats right after a call never races the server; the status is the one
                # sent (FileResponse turns 200 into 206 for a Range).
                self.state.stats.record(method, name, raw_path, message["status"])
                recorded = True
            await send(message)

        try:
            await response(scope, receive, send_tracking)
        finally:
            if not recorded:  # the response failed before it started
                self.state.stats.record(method, name, raw_path, response.status_code)

    async def _run(self, rt: Route, request: Request, params: dict[str, str]) -> Any:
        who = self.state.accounts.principal(request.headers.get("authorization"))
        ctx = Ctx(request=request, hub=self.state, params=params, who=who)
        if who is not None:
            log.debug("%s %s by token %s (%s)", request.method, rt.name, who.token_id, who.role)
        if rt.stream:
            return await rt.handler(ctx)  # type: ignore[misc]
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            raise HubError("request body too large", status=413)
        ctx.body = await request.body()
        return await run_in_threadpool(rt.handler, ctx)


def build_app(state: HubState) -> ASGIApp:
    """The full ASGI stack: fault injection outside, the Hub inside."""
    return FaultMiddleware(HubApp(state), state.faults)
