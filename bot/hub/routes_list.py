"""`GET /api/models` (and datasets, spaces): search, filter, sort, expand and page, as
`HfApi.list_models` of huggingface_hub 2.4 asks for it; plus the info document builder shared
with `model_info`.

What the client sends (hf_api.py `list_models`): `filter` (repeated; tags, which include the
library, the pipeline tag and `license:`/`diffusers:` tags), `author`, `search`,
`pipeline_tag`, `gated`, `sort` (lastModified, createdAt, downloads, likes, id), `limit`, and
either `expand` (repeated) or `full` / `cardData`; `library` and `direction` (1 or -1) are the
Hub's own parameters. The client follows `Link: <...>; rel="next"` as is.

Pages are cut by a keyset cursor (the sort value and repo id of the last entry, opaque to the
client), not an offset: a commit that moves a repo to the front between two pages shifts no
other repo, so a listing never repeats a repo nor skips one that did not change.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from bot.hub.errors import BadRequest
from bot.hub.http import Ctx, json_response, route
from bot.hub.model import Commit, RepoMeta

SORT_FIELDS = {
    "lastModified": "last_modified",
    "createdAt": "created_at",
    "downloads": "downloads",
    "likes": "likes",
    "id": "repo_id",
}
# expand= names of ExpandModelProperty_T this server can answer; other names are ignored
EXPANDABLE = {
    "author",
    "cardData",
    "createdAt",
    "disabled",
    "downloads",
    "downloadsAllTime",
    "gated",
    "lastModified",
    "library_name",
    "likes",
    "pipeline_tag",
    "private",
    "sha",
    "siblings",
    "tags",
}


def siblings(commit: Commit, blobs: bool) -> list[dict[str, Any]]:
    out = []
    for path, e in sorted(commit.files.items()):
        item: dict[str, Any] = {"rfilename": path}
        if blobs:
            item.update(size=e.size, blobId=e.oid)
            if e.lfs:
                item["lfs"] = {"sha256": e.sha256, "size": e.size, "pointerSize": e.pointer_size}
        out.append(item)
    return out


def repo_info(
    ctx: Ctx, meta: RepoMeta, commit: Commit | None, *, blobs: bool = False, card: bool = True
) -> dict[str, Any]:
    """The info document of model_info/dataset_info (and of list entries).

    For main's head (or `commit=None`) it comes from the repo summary; for another revision
    the card and tags are derived from that commit."""
    if commit is None or commit.id == meta.sha:
        card_data, tags = meta.card_data, meta.tags
        library, pipeline = meta.library_name, meta.pipeline_tag
    else:
        card_data, facts = ctx.hub.repos.describe(meta.repo_type, meta.repo_id, commit)
        tags, library, pipeline = facts.tags, facts.library_name, facts.pipeline_tag
    info: dict[str, Any] = {
        "_id": meta.repo_id,
        "id": meta.repo_id,
        "author": meta.author,
        "sha": commit.id if commit else meta.sha,
        "lastModified": commit.date if commit else meta.last_modified,
        "createdAt": meta.created_at,
        "private": meta.private,
        "gated": meta.gated,
        "disabled": False,
        "downloads": meta.downloads,
        "downloadsAllTime": meta.downloads,
        "likes": meta.likes,
        "tags": tags,
    }
    if meta.repo_type == "model":
        info["modelId"] = meta.repo_id
        info["library_name"] = library
        info["pipeline_tag"] = pipeline
    if card and card_data is not None:
        info["cardData"] = card_data
    if commit is not None:
        info["siblings"] = siblings(commit, blobs)
    return info


def expand_params(ctx: Ctx) -> list[str]:
    q = ctx.request.query_params
    return q.getlist("expand") + q.getlist("expand[]")


def only(info: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    keep = {"_id", "id", *keys}
    return {k: v for k, v in info.items() if k in keep}


def _flag_value(raw: str | None) -> bool | None:
    if raw is None:
        return None
    value = raw.lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest("query parameter 'gated' must be true or false")
    return value in ("true", "1")


def _matches(meta: RepoMeta, ctx: Ctx) -> bool:
    q = ctx.request.query_params
    author, search = q.get("author"), (q.get("search") or "").lower()
    if author and meta.author != author:
        return False
    if search and search not in meta.repo_id.lower():
        return False
    tags = set(meta.tags)
    if not all(f in tags or f == meta.repo_id for f in q.getlist("filter")):
        return False
    pipeline = q.get("pipeline_tag")
    if pipeline and meta.pipeline_tag != pipeline:
        return False
    libraries = q.getlist("library")
    if libraries and not all(lib in tags for lib in libraries):
        return False
    gated = _flag_value(q.get("gated"))
    return gated is None or bool(meta.gated) == gated


def _order(ctx: Ctx) -> tuple[str, bool]:
    """(RepoMeta attribute to sort on, descending)."""
    q = ctx.request.query_params
    sort = q.get("sort") or "id"
    if sort not in SORT_FIELDS:
        raise BadRequest(f"sort must be one of {sorted(SORT_FIELDS)}, not {sort!r}")
    default = "1" if sort == "id" else "-1"
    direction = q.get("direction") or default
    if direction not in ("1", "-1"):
        raise BadRequest("direction must be 1 or -1")
    return SORT_FIELDS[sort], direction == "-1"


def _cursor(key: tuple[Any, str], field: str, descending: bool) -> str:
    raw = json.dumps([field, descending, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(token: str, field: str, descending: bool) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        f, desc, value, repo_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid cursor") from exc
    if f != field or desc != descending or not isinstance(repo_id, str):
        raise BadRequest("cursor belongs to another sort order")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise BadRequest("invalid cursor")
    return value, repo_id


@route("GET", r"/api/(?P<types>models|datasets|spaces)", "list")
def list_repos(ctx: Ctx) -> Response:
    """Search, filter, sort and page through repos; the next page is in the Link header."""
    q = ctx.request.query_params
    field, descending = _order(ctx)

    def key(m: RepoMeta) -> tuple[Any, str]:
        return getattr(m, field), m.repo_id

    repos = [
        m
        for m in ctx.hub.repos.all_repos(ctx.repo_type)
        if ctx.hub.accounts.can_see(ctx.who, m) and _matches(m, ctx)
    ]
    repos.sort(key=key, reverse=descending)
    if q.get("cursor"):
        mark = _after(q["cursor"], field, descending)
        repos = [m for m in repos if (key(m) < mark if descending else key(m) > mark)]
    page_size = min(ctx.query_int("limit", ctx.hub.page_size, lo=1), ctx.hub.page_size)
    page = repos[:page_size]
    full, expand = ctx.flag("full"), expand_params(ctx)
    want = [e for e in expand if e in EXPANDABLE]
    out = []
    for meta in page:
        commit = None
        if full or "siblings" in want:
            commit = ctx.hub.repos.load_commit(ctx.repo_type, meta.repo_id, meta.sha)
        item = repo_info(ctx, meta, commit, card=full or ctx.flag("cardData") or "cardData" in want)
        out.append(only(item, want) if expand else item)
    headers = {}
    if len(repos) > page_size:
        params = [(k, v) for k, v in q.multi_items() if k != "cursor"]
        params.append(("cursor", _cursor(key(page[-1]), field, descending)))
        url = f"{ctx.base_url}{ctx.request.url.path}?{urlencode(params)}"
        headers["Link"] = f'<{url}>; rel="next"'
    return json_response(out, headers=headers)


ROUTES = [list_repos]
