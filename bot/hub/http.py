"""Request context, route type and response helpers shared by the route modules.

Routing is done on the raw (still percent-encoded) path because the client encodes
revisions (`refs%2Fpr%2F1`) and tree paths (`a%2Fb`) as single segments; each captured
group is unquoted once, after matching.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.hub.auth import Principal
from bot.hub.storage import BadRequest, HubError, RepoMeta

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SEG = r"[^/]+"
REPO = rf"(?P<ns>{SEG})/(?P<name>{SEG})"
API_REPO = rf"/api/(?P<types>models|datasets|spaces)/{REPO}"


@dataclass
class Ctx:
    """Everything a handler needs: the request, the server state, captured params, caller."""

    request: Request
    hub: Any  # bot.hub.app.HubState (Any to avoid an import cycle)
    params: dict[str, str]
    who: Principal | None
    body: bytes = b""
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def repo_type(self) -> str:
        if "types" in self.params:
            return TYPES[self.params["types"]]
        return self.params.get("rtype") or "model"

    @property
    def repo_id(self) -> str:
        return f"{self.params['ns']}/{self.params['name']}"

    @property
    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")

    def repo_url(self, repo_type: str | None = None, repo_id: str | None = None) -> str:
        rtype = repo_type or self.repo_type
        return f"{self.base_url}/{URL_PREFIX[rtype]}{repo_id or self.repo_id}"

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise BadRequest("request body is not valid JSON") from exc

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query_params.get(name, default)

    def flag(self, name: str) -> bool:
        return (self.query(name) or "").lower() in ("1", "true", "yes")

    def repo(self, *, write: bool = False, contribute: bool = False) -> RepoMeta:
        """The repo of this URL as the caller may see it: private ones are 404 to others.

        `write` needs a write token of the owning namespace; `contribute` (opening a pull
        request, uploading its objects) needs any write token, as on the real Hub.
        """
        meta = self.hub.repos.get(self.repo_type, self.repo_id)
        if not self.hub.accounts.can_see(self.who, meta):
            raise HubError(f"Repository {self.repo_id} not found", status=404, code="RepoNotFound")
        if write:
            self.hub.accounts.require_write(self.who, None if contribute else meta.author)
        return meta


SyncHandler = Callable[[Ctx], Response]
AsyncHandler = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """A method set and a raw-path regex; `stream` handlers are async and read the body."""

    methods: tuple[str, ...]
    pattern: re.Pattern[str]
    handler: SyncHandler | AsyncHandler
    name: str
    stream: bool = False

    def match(self, method: str, raw_path: str) -> dict[str, str] | None:
        if method not in self.methods:
            return None
        m = self.pattern.fullmatch(raw_path)
        if m is None:
            return None
        return {k: unquote(v) for k, v in m.groupdict().items() if v is not None}


def route(
    methods: str, pattern: str, name: str, *, stream: bool = False
) -> Callable[[Callable[..., Any]], Route]:
    """Decorator turning a handler into a Route (HEAD is served wherever GET is)."""
    ms = tuple(methods.split(","))
    if "GET" in ms:
        ms = (*ms, "HEAD")

    def wrap(fn: Callable[..., Any]) -> Route:
        return Route(ms, re.compile(pattern), fn, name, stream)

    return wrap


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


def error_response(err: HubError, headers: dict[str, str] | None = None) -> Response:
    """Typed error: the client turns X-Error-Code into RepositoryNotFoundError & co."""
    hdrs = dict(headers or {})
    message = err.message.replace("\n", " ")
    hdrs["X-Error-Message"] = message.encode("ascii", "replace").decode()
    if err.code:
        hdrs["X-Error-Code"] = err.code
    return JSONResponse({"error": message}, status_code=err.status, headers=hdrs)
