"""Repo-level routes: whoami, create/delete/settings, listing, info, tree, paths-info, refs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from bot.hub import cardmeta
from bot.hub.auth import Unauthorized
from bot.hub.http import API_REPO, SEG, Ctx, json_response, route
from bot.hub.storage import (
    BadRequest,
    Commit,
    Conflict,
    EntryNotFound,
    FileEntry,
    HubError,
    RepoMeta,
    check_repo_id,
)

_SORT_KEYS = {"lastModified": "last_modified", "createdAt": "created_at", "id": "repo_id"}


@route("GET", "/api/whoami-v2", "whoami")
def whoami(ctx: Ctx) -> Response:
    if ctx.who is None:
        raise Unauthorized("Invalid username or password.")
    return json_response(ctx.hub.accounts.whoami(ctx.who))


@route("GET", "/api/agent-harnesses", "agent-harnesses")
def agent_harnesses(ctx: Ctx) -> Response:
    """Always 404: any other 2xx body would crash every client call (see hub-protocol.md)."""
    raise HubError("Not Found", status=404)


def _visibility(body: dict[str, Any]) -> bool:
    if "visibility" in body:
        return body["visibility"] == "private"
    return bool(body.get("private", False))


@route("POST", "/api/repos/create", "create-repo")
def create_repo(ctx: Ctx) -> Response:
    body = ctx.json() or {}
    if ctx.who is None:
        raise Unauthorized("You must be authenticated to create a repo")
    name = str(body.get("name") or "")
    ns = str(body.get("organization") or ctx.who.user)
    repo_type = str(body.get("type") or "model")
    if repo_type not in ("model", "dataset", "space"):
        raise BadRequest(f"invalid repo type {repo_type!r}")
    repo_id = f"{ns}/{name}"
    check_repo_id(repo_id)
    ctx.hub.accounts.require_write(ctx.who, ns)
    gated = body.get("gated", False)
    if gated not in (False, "auto", "manual"):
        raise BadRequest("gated must be false, 'auto' or 'manual'")
    url = ctx.repo_url(repo_type, repo_id)
    try:
        ctx.hub.repos.create(
            repo_type, repo_id, author=ctx.who.user, private=_visibility(body), gated=gated
        )
    except Conflict as err:  # exist_ok in the client reads `url` from the 409 body
        return json_response(
            {"error": err.message, "url": url}, 409, headers={"X-Error-Message": err.message}
        )
    return json_response({"url": url, "name": repo_id, "id": repo_id})


@route("DELETE", "/api/repos/delete", "delete-repo")
def delete_repo(ctx: Ctx) -> Response:
    body = ctx.json() or {}
    if ctx.who is None:
        raise Unauthorized("You must be authenticated to delete a repo")
    repo_type = str(body.get("type") or "model")
    repo_id = f"{body.get('organization') or ctx.who.user}/{body.get('name')}"
    check_repo_id(repo_id)
    meta = ctx.hub.repos.get(repo_type, repo_id)
    if not ctx.hub.accounts.can_see(ctx.who, meta):
        raise HubError(f"Repository {repo_id} not found", status=404, code="RepoNotFound")
    ctx.hub.accounts.require_write(ctx.who, meta.author)
    ctx.hub.repos.delete(repo_type, repo_id)
    return json_response({})


@route("PUT", API_REPO + "/settings", "settings")
def settings(ctx: Ctx) -> Response:
    ctx.repo(write=True)
    body = ctx.json() or {}
    gated = body.get("gated")
    if gated is not None and gated not in (False, "auto", "manual"):
        raise BadRequest("gated must be false, 'auto' or 'manual'")
    private = _visibility(body) if ("private" in body or "visibility" in body) else None
    ctx.hub.repos.update_settings(ctx.repo_type, ctx.repo_id, private=private, gated=gated)
    return json_response({})


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
    """The info document of model_info/dataset_info (and of full list entries)."""
    card_data = (
        meta.card_data
        if commit is None or commit.id == meta.sha
        else (ctx.hub.repos.card_data(commit))
    )
    files = list(commit.files) if commit else []
    tags = (
        meta.tags
        if commit is None or commit.id == meta.sha
        else cardmeta.derive_tags(card_data, files)
    )
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
        "downloads": 0,
        "likes": 0,
        "tags": tags,
    }
    if meta.repo_type == "model":
        info["modelId"] = meta.repo_id
        info["library_name"] = (card_data or {}).get("library_name")
        info["pipeline_tag"] = (card_data or {}).get("pipeline_tag")
    if card and card_data is not None:
        info["cardData"] = card_data
    if commit is not None:
        info["siblings"] = siblings(commit, blobs)
    return info


def _expand(ctx: Ctx) -> list[str]:
    return ctx.request.query_params.getlist("expand") + ctx.request.query_params.getlist("expand[]")


def _only(info: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    keep = {"_id", "id", *keys}
    return {k: v for k, v in info.items() if k in keep}


@route("GET", API_REPO + rf"(?:/revision/(?P<rev>{SEG}))?", "info")
def info(ctx: Ctx) -> Response:
    meta = ctx.repo()
    sha = ctx.hub.repos.resolve(ctx.repo_type, ctx.repo_id, ctx.params.get("rev", "main"))
    commit = ctx.hub.repos.load_commit(ctx.repo_type, ctx.repo_id, sha)
    expand = _expand(ctx)
    data = repo_info(ctx, meta, commit, blobs=ctx.flag("blobs") or "siblings" in expand)
    return json_response(_only(data, expand) if expand else data)


def _matches_filters(meta: RepoMeta, filters: list[str]) -> bool:
    tags = set(meta.tags)
    return all(f in tags or f == meta.repo_id for f in filters)


@route("GET", r"/api/(?P<types>models|datasets|spaces)", "list")
def list_repos(ctx: Ctx) -> Response:
    """Search, filter, sort and page through repos; the next page is in the Link header."""
    q = ctx.request.query_params
    search = (q.get("search") or "").lower()
    author = q.get("author")
    filters = q.getlist("filter")
    repos = [
        m
        for m in ctx.hub.repos.all_repos(ctx.repo_type)
        if ctx.hub.accounts.can_see(ctx.who, m)
        and (not author or m.author == author)
        and (not search or search in m.repo_id.lower())
        and (not filters or _matches_filters(m, filters))
    ]
    if q.get("gated") is not None:
        want = q.get("gated", "").lower() == "true"
        repos = [m for m in repos if bool(m.gated) == want]
    sort = _SORT_KEYS.get(q.get("sort") or "", "repo_id")
    descending = q.get("direction", "-1" if sort != "repo_id" else "1") == "-1"
    repos.sort(key=lambda m: (getattr(m, sort), m.repo_id), reverse=descending)
    limit = int(q.get("limit") or ctx.hub.page_size)
    page_size = max(1, min(limit, ctx.hub.page_size))
    offset = int(q.get("cursor") or 0)
    page = repos[offset : offset + page_size]
    full = ctx.flag("full")
    expand = q.getlist("expand")
    out = []
    for meta in page:
        commit = None
        if full or "siblings" in expand:
            commit = ctx.hub.repos.load_commit(ctx.repo_type, meta.repo_id, meta.sha)
        item = repo_info(
            ctx, meta, commit, card=full or ctx.flag("cardData") or "cardData" in expand
        )
        out.append(_only(item, expand) if expand else item)
    headers = {}
    if offset + page_size < len(repos):
        params = [(k, v) for k, v in q.multi_items() if k != "cursor"]
        params.append(("cursor", str(offset + page_size)))
        url = f"{ctx.base_url}{ctx.request.url.path}?{urlencode(params)}"
        headers["Link"] = f'<{url}>; rel="next"'
    return json_response(out, headers=headers)


def _dirs(files: dict[str, FileEntry]) -> set[str]:
    out = set()
    for p in files:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def _tree_oid(files: dict[str, FileEntry], folder: str) -> str:
    import hashlib

    prefix = folder + "/"
    h = hashlib.sha1()
    for p in sorted(files):
        if p.startswith(prefix):
            h.update(f"{p}\0{files[p].oid}\n".encode())
    return h.hexdigest()


def entry_json(path: str, e: FileEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": e.oid, "size": e.size, "path": path}
    if e.lfs:
        item["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": e.pointer_size}
    return item


def dir_json(files: dict[str, FileEntry], path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": _tree_oid(files, path), "size": 0, "path": path}


def _last_commits(ctx: Ctx, head: Commit, paths: list[str]) -> dict[str, dict[str, Any]]:
    """Newest commit (first-parent walk, bounded) that changed each path."""
    repos, todo, out = ctx.hub.repos, set(paths), {}
    commit: Commit | None = head
    for _ in range(200):
        if commit is None or not todo:
            break
        parent = (
            repos.load_commit(ctx.repo_type, ctx.repo_id, commit.parents[0])
            if commit.parents
            else None
        )
        for p in list(todo):
            prefix = p + "/"
            now = {k: v for k, v in commit.files.items() if k == p or k.startswith(prefix)}
            before = (
                {k: v for k, v in parent.files.items() if k == p or k.startswith(prefix)}
                if parent
                else {}
            )
            if now != before or parent is None:
                out[p] = {"id": commit.id, "title": commit.title, "date": commit.date}
                todo.discard(p)
        commit = parent
    return out


def _with_last_commit(ctx: Ctx, head: Commit, items: list[dict[str, Any]]) -> None:
    info = _last_commits(ctx, head, [i["path"] for i in items])
    for item in items:
        if item["path"] in info:
            item["lastCommit"] = info[item["path"]]


@route("GET", API_REPO + rf"/tree/(?P<rev>{SEG})(?:/(?P<path>.+))?", "tree")
def tree(ctx: Ctx) -> Response:
    ctx.repo()
    sha = ctx.hub.repos.resolve(ctx.repo_type, ctx.repo_id, ctx.params["rev"])
    commit = ctx.hub.repos.load_commit(ctx.repo_type, ctx.repo_id, sha)
    base = ctx.params.get("path", "").strip("/")
    recursive = ctx.flag("recursive")
    files, dirs = commit.files, _dirs(commit.files)
    if base and base not in dirs:
        raise EntryNotFound(f"{base} does not exist at {ctx.params['rev']}")
    prefix = base + "/" if base else ""

    def wanted(p: str) -> bool:
        return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

    items = [dir_json(files, d) for d in sorted(dirs) if wanted(d)]
    items += [entry_json(p, e) for p, e in sorted(files.items()) if wanted(p)]
    if ctx.flag("expand"):
        _with_last_commit(ctx, commit, items)
    return json_response(items)


@route("POST", API_REPO + rf"/paths-info/(?P<rev>{SEG})", "paths-info")
def paths_info(ctx: Ctx) -> Response:
    ctx.repo()
    sha = ctx.hub.repos.resolve(ctx.repo_type, ctx.repo_id, ctx.params["rev"])
    commit = ctx.hub.repos.load_commit(ctx.repo_type, ctx.repo_id, sha)
    if ctx.request.headers.get("content-type", "").startswith("application/json"):
        body = ctx.json() or {}
        paths, expand = list(body.get("paths") or []), bool(body.get("expand"))
    else:
        form = ctx.form()
        paths = form.get("paths", [])
        expand = (form.get("expand") or ["false"])[0].lower() == "true"
    dirs = _dirs(commit.files)
    items = []
    for p in paths:
        p = p.strip("/")
        if p in commit.files:
            items.append(entry_json(p, commit.files[p]))
        elif p in dirs:
            items.append(dir_json(commit.files, p))
    if expand:
        _with_last_commit(ctx, commit, items)
    return json_response(items)


@route("GET", API_REPO + "/refs", "refs")
def refs(ctx: Ctx) -> Response:
    ctx.repo()
    repos = ctx.hub.repos
    heads_dir = repos.repo_dir(ctx.repo_type, ctx.repo_id) / "refs" / "heads"
    branches = [
        {"name": p.name, "ref": f"refs/heads/{p.name}", "targetCommit": p.read_text().strip()}
        for p in sorted(heads_dir.iterdir())
    ]
    prs = []
    if ctx.flag("include_prs"):
        for n in repos.pr_numbers(ctx.repo_type, ctx.repo_id):
            ref = f"refs/pr/{n}"
            prs.append(
                {
                    "name": ref,
                    "ref": ref,
                    "targetCommit": repos.read_ref(ctx.repo_type, ctx.repo_id, ref),
                }
            )
    return json_response({"branches": branches, "converts": [], "tags": [], "pullRequests": prs})


@route("GET", API_REPO + rf"/commits/(?P<rev>{SEG})", "commits")
def commits(ctx: Ctx) -> Response:
    """First-parent history, newest first (one page; enough for the bot's use)."""
    ctx.repo()
    repos = ctx.hub.repos
    sha: str | None = repos.resolve(ctx.repo_type, ctx.repo_id, ctx.params["rev"])
    out = []
    while sha and len(out) < 1000:
        c = repos.load_commit(ctx.repo_type, ctx.repo_id, sha)
        out.append(
            {
                "id": c.id,
                "title": c.title,
                "message": c.message,
                "date": c.date,
                "authors": [{"user": c.author}],
            }
        )
        sha = c.parents[0] if c.parents else None
    return json_response(out)


@route("POST", "/api/validate-yaml", "validate-yaml")
def validate_yaml(ctx: Ctx) -> Response:
    body = ctx.json() or {}
    try:
        cardmeta.parse_card_data(str(body.get("content") or ""))
    except cardmeta.CardMetaError as exc:
        return json_response({"errors": [{"message": str(exc)}], "warnings": []}, 400)
    return json_response({"errors": [], "warnings": []})


ROUTES = [
    whoami,
    agent_harnesses,
    create_repo,
    delete_repo,
    settings,
    list_repos,
    info,
    tree,
    paths_info,
    refs,
    commits,
    validate_yaml,
]
