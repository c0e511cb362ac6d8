"""Request context, route type and response helpers shared by the route modules.

Routing is done on the raw (still percent-encoded) path because the client encodes
revisions (`refs%2Fpr%2F1`) and tree paths (`a%2Fb`) as single segments; each captured
group is unquoted once, after matching. Nothing a caller sends reaches a response header
unescaped: `header_safe` keeps printable ASCII only (h11 refuses control characters and
drops the connection; non-ASCII is not valid in a header; nor are leading or trailing blanks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.hub import shapes
from bot.hub.auth import Principal
from bot.hub.errors import BadRequest, HttpError, RepoNotFound
from bot.hub.model import RepoMeta

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SEG = r"[^/]+"
REPO = rf"(?P<ns>{SEG})/(?P<name>{SEG})"
API_REPO = rf"/api/(?P<types>models|datasets|spaces)/{REPO}"
JSON_BODY_MAX = 8 * 1024 * 1024  # JSON bodies: preupload/LFS batches of 256 files are ~300 KB
_UNSAFE_HEADER = re.compile(r"[^\x20-\x7e]")
M = TypeVar("M", bound=BaseModel)


def header_safe(value: str, limit: int = 1000) -> str:
    """A header value made of printable ASCII (anything else becomes `?`), without the
    leading or trailing blanks h11 refuses."""
    return _UNSAFE_HEADER.sub("?", value)[:limit].strip()


@dataclass
class Ctx:
    """Everything a handler needs: the request, the server state, captured params, caller."""

    request: Request
    hub: Any  # bot.hub.state.HubState (Any to avoid an import cycle)
    params: dict[str, str]
    who: Principal | None
    body: bytes | bytearray = b""
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

    def parse(self, model: type[M]) -> M:
        """The JSON body validated against `model` (shapes.py); 400 naming the bad field."""
        return shapes.parse(model, self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query_params.get(name, default)

    def query_int(self, name: str, default: int, lo: int = 0, hi: int = 1 << 31) -> int:
        raw = self.query(name)
        if raw is None or raw == "":
            return default
        if not raw.isascii() or not raw.lstrip("-").isdigit():
            raise BadRequest(f"query parameter {name!r} must be an integer")
        value = int(raw)
        if not lo <= value <= hi:
            raise BadRequest(f"query parameter {name!r} must be between {lo} and {hi}")
        return value

    def flag(self, name: str) -> bool:
        return (self.query(name) or "").lower() in ("1", "true", "yes")

    def repo(self, *, write: bool = False, contribute: bool = False) -> RepoMeta:
        """The repo of this URL as the caller may see it: private ones are 404 to others.

        `write` needs a write token of the owning namespace; `contribute` (opening a pull
        request, uploading its objects) needs any write token, as on the real Hub.
        """
        meta = self.hub.repos.get(self.repo_type, self.repo_id)
        if not self.hub.accounts.can_see(self.who, meta):
            raise RepoNotFound(f"Repository {self.repo_id} not found")
        if write:
            self.hub.accounts.require_write(self.who, None if contribute else meta.author)
        return meta


SyncHandler = Callable[[Ctx], Response]
AsyncHandler = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """A method set and a raw-path regex.

    `stream` handlers are async and read the body themselves; the others get the body read
    up to the server's cap for its `body` kind ("json" or "commit"; 413 past it, counted
    while streaming, chunked bodies included). `token` routes answer 401 to anonymous
    callers before reading any body."""

    methods: tuple[str, ...]
    pattern: re.Pattern[str]
    handler: SyncHandler | AsyncHandler
    name: str
    stream: bool = False
    body: str = "json"
    token: bool = False

    def match(self, method: str, raw_path: str) -> dict[str, str] | None:
        if method not in self.methods:
            return None
        m = self.pattern.fullmatch(raw_path)
        if m is None:
            return None
        return {k: unquote(v) for k, v in m.groupdict().items() if v is not None}


def route(
    methods: str,
    pattern: str,
    name: str,
    *,
    stream: bool = False,
    body: str = "json",
    token: bool = False,
) -> Callable[[Callable[..., Any]], Route]:
    """Decorator turning a handler into a Route (HEAD is served wherever GET is)."""
    ms = tuple(methods.split(","))
    if "GET" in ms:
        ms = (*ms, "HEAD")

    def wrap(fn: Callable[..., Any]) -> Route:
        return Route(ms, re.compile(pattern), fn, name, stream, body, token)

    return wrap


class _JsonResponse(JSONResponse):
    """JSONResponse that still answers when a caller-supplied string holds a lone surrogate
    (valid in a JSON escape, not in UTF-8): such strings are sent \\u-escaped."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return _JsonResponse(data, status_code=status, headers=headers)


def error_response(err: HttpError, headers: dict[str, str] | None = None) -> Response:
    """Typed error: the client turns X-Error-Code into RepositoryNotFoundError & co."""
    hdrs = dict(headers or {})
    hdrs["X-Error-Message"] = header_safe(err.message)
    if err.code:
        hdrs["X-Error-Code"] = err.code
    return _JsonResponse({"error": err.message}, status_code=err.status, headers=hdrs)
