"""Repo-level routes: whoami, create/delete/settings, info, tree, paths-info, refs, commits,
validate-yaml."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.responses import Response

from bot.hub import cardmeta, security, shapes
from bot.hub.errors import Conflict, EntryNotFound, NotFound, RepoNotFound, Unauthorized
from bot.hub.http import API_REPO, SEG, Ctx, json_response, route
from bot.hub.model import Commit, FileEntry, check_path, check_repo_id
from bot.hub.routes_list import expand_params, only, repo_info

_COMMITS_PAGE = 1000
_WALK_LIMIT = 200


@route("GET", "/api/whoami-v2", "whoami")
def whoami(ctx: Ctx) -> Response:
    if ctx.who is None:
        raise Unauthorized("Invalid username or password.")
    return json_response(ctx.hub.accounts.whoami(ctx.who))


@route("GET", "/api/agent-harnesses", "agent-harnesses")
def agent_harnesses(ctx: Ctx) -> Response:
    """Always 404: any other 2xx body would crash every client call (see hub-protocol.md)."""
    raise NotFound("Not Found")


def _private(private: bool | None, visibility: str | None) -> bool | None:
    if visibility is not None:
        return visibility == "private"
    return private


@route("POST", "/api/repos/create", "create-repo", token=True)
def create_repo(ctx: Ctx) -> Response:
    body = ctx.parse(shapes.CreateRepo)
    assert ctx.who is not None  # token route
    ns = body.organization or ctx.who.user
    repo_type = body.type or "model"
    repo_id = f"{ns}/{body.name}"
    check_repo_id(repo_id)
    ctx.hub.accounts.require_write(ctx.who, ns)
    url = ctx.repo_url(repo_type, repo_id)
    try:
        ctx.hub.repos.create(
            repo_type,
            repo_id,
            author=ctx.who.user,
            private=bool(_private(body.private, body.visibility)),
            gated=body.gated or False,
        )
    except Conflict as err:  # exist_ok in the client reads `url` from the 409 body
        return json_response(
            {"error": err.message, "url": url}, 409, headers={"X-Error-Message": err.message}
        )
    return json_response({"url": url, "name": repo_id, "id": repo_id})


@route("DELETE", "/api/repos/delete", "delete-repo", token=True)
def delete_repo(ctx: Ctx) -> Response:
    body = ctx.parse(shapes.DeleteRepo)
    assert ctx.who is not None  # token route
    repo_type = body.type or "model"
    repo_id = f"{body.organization or ctx.who.user}/{body.name}"
    check_repo_id(repo_id)
    meta = ctx.hub.repos.get(repo_type, repo_id)
    if not ctx.hub.accounts.can_see(ctx.who, meta):
        raise RepoNotFound(f"Repository {repo_id} not found")
    ctx.hub.accounts.require_write(ctx.who, meta.author)
    ctx.hub.repos.delete(repo_type, repo_id)
    return json_response({})


@route("PUT", API_REPO + "/settings", "settings", token=True)
def settings(ctx: Ctx) -> Response:
    ctx.repo(write=True)
    body = ctx.parse(shapes.RepoSettings)
    ctx.hub.repos.update_settings(
        ctx.repo_type,
        ctx.repo_id,
        private=_private(body.private, body.visibility),
        gated=body.gated,
    )
    return json_response({})


@route("GET", API_REPO + rf"(?:/revision/(?P<rev>{SEG}))?", "info")
def info(ctx: Ctx) -> Response:
    meta = ctx.repo()
    sha = ctx.hub.repos.resolve(ctx.repo_type, ctx.repo_id, ctx.params.get("rev", "main"))
    commit = ctx.hub.repos.load_commit(ctx.repo_type, ctx.repo_id, sha)
    expand = expand_params(ctx)
    data = repo_info(ctx, meta, commit, blobs=ctx.flag("blobs") or "siblings" in expand)
    return json_response(only(data, expand) if expand else data)


def _dirs(files: dict[str, FileEntry]) -> set[str]:
    out = set()
    for p in files:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def _tree_oid(files: dict[str, FileEntry], folder: str) -> str:
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
    for _ in range(_WALK_LIMIT):
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
    if base:
        check_path(base)
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
        security.with_records(ctx.hub, ctx.repo_id, files, items)
    return json_response(items)


@route("POST", API_REPO + rf"/paths-info/(?P<rev>{SEG})", "paths-info")
def paths_info(ctx: Ctx) -> Response:
    """The client posts a form (`paths`, repeated, and `expand`); JSON is accepted too."""
    ctx.repo()
    sha = ctx.hub.repos.resolve(ctx.repo_type, ctx.repo_id, ctx.params["rev"])
    commit = ctx.hub.repos.load_commit(ctx.repo_type, ctx.repo_id, sha)
    if ctx.request.headers.get("content-type", "").startswith("application/json"):
        body = ctx.parse(shapes.PathsInfo)
        paths, expand = body.paths, body.expand
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
        security.with_records(ctx.hub, ctx.repo_id, commit.files, items)
    return json_response(items)


@route("GET", API_REPO + "/refs", "refs")
def refs(ctx: Ctx) -> Response:
    ctx.repo()
    repos = ctx.hub.repos
    heads_dir = repos.repo_dir(ctx.repo_type, ctx.repo_id) / "refs" / "heads"
    branches = [
        {"name": p.name, "ref": f"refs/heads/{p.name}", "targetCommit": p.read_text().strip()}
        for p in sorted(heads_dir.iterdir())
        if not p.name.startswith(".")
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
    while sha and len(out) < _COMMITS_PAGE:
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
    """Report what a commit of this README would be refused for (cardmeta.py's rule)."""
    body = ctx.parse(shapes.ValidateYaml)
    try:
        cardmeta.parse_card_data(body.content)
    except cardmeta.CardMetaError as exc:
        return json_response({"errors": [{"message": str(exc)}], "warnings": []}, 400)
    return json_response({"errors": [], "warnings": []})


ROUTES = [
    whoami,
    agent_harnesses,
    create_repo,
    delete_repo,
    settings,
    info,
    tree,
    paths_info,
    refs,
    commits,
    validate_yaml,
]
