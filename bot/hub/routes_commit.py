"""The NDJSON commit endpoint: parse and validate the payload, then commit (or open a PR)."""

from __future__ import annotations

import base64
from typing import Any

from starlette.responses import Response

from bot.hub import cardmeta, shapes
from bot.hub.errors import BadRequest, HttpError
from bot.hub.http import API_REPO, SEG, Ctx, json_response, route
from bot.hub.model import AddLfs, AddRegular, Delete, Operation, check_path

README = "README.md"


def check_readme(data: bytes) -> None:
    """Refuse a README.md whose metadata the Hub would refuse (cardmeta.py's rule)."""
    try:
        cardmeta.parse_card_data(data.decode("utf-8"))
    except (cardmeta.CardMetaError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{README}: {exc}") from exc


def _operation(line: Any, number: int) -> Operation:
    value = line.value
    if isinstance(line, shapes.FileLine):
        try:
            data = base64.b64decode(value.content, validate=True)
        except ValueError as exc:
            raise BadRequest(f"line {number}: content of {value.path!r} is not base64") from exc
        return AddRegular(check_path(value.path), data)
    if isinstance(line, shapes.LfsFileLine):
        return AddLfs(check_path(value.path), value.oid, value.size)
    folder = isinstance(line, shapes.DeletedFolderLine)
    check_path(value.path.rstrip("/") if folder else value.path)
    return Delete(value.path, folder=folder)


def parse_commit(body: bytes | bytearray) -> tuple[shapes.CommitHeader, list[Operation]]:
    """NDJSON commit payload -> (header, operations); 400 naming the line and field."""
    header: shapes.CommitHeader | None = None
    ops: list[Operation] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        item = shapes.parse_commit_line(line, number)
        if isinstance(item, shapes.HeaderLine):
            if header is not None:
                raise BadRequest(f"invalid commit payload, line {number}: a second header")
            header = item.value
        else:
            ops.append(_operation(item, number))
    if header is None:
        raise BadRequest("commit payload has no header line")
    for op in ops:
        if isinstance(op, AddRegular) and op.path == README:
            check_readme(op.data)
    return header, ops


def own_pr(ctx: Ctx, rev: str) -> bool:
    """True when `rev` is refs/pr/N of a pull request the caller opened."""
    if ctx.who is None or not rev.startswith("refs/pr/") or not rev[8:].isdigit():
        return False
    try:
        pr = ctx.hub.discussions.get(ctx.repo_type, ctx.repo_id, int(rev[8:]))
    except HttpError:
        return False
    return bool(pr.get("isPullRequest")) and pr.get("author") == ctx.who.user


@route("POST", API_REPO + rf"/commit/(?P<rev>{SEG})", "commit", body="commit", token=True)
def commit(ctx: Ctx) -> Response:
    """Create a commit on a branch, on refs/pr/N, or (create_pr=1) as a new pull request.

    Opening a pull request, or adding commits to one's own, needs only a write token."""
    ctx.repo(write=True, contribute=ctx.flag("create_pr") or own_pr(ctx, ctx.params["rev"]))
    header, ops = parse_commit(ctx.body)
    who = ctx.who
    assert who is not None  # token route
    rev = ctx.params["rev"]
    pr_num = None
    kwargs: dict[str, Any] = {
        "revision": rev,
        "ops": ops,
        "title": (header.summary or "Upload files").strip() or "Upload files",
        "message": header.description or "",
        "author": who.user,
        "parent_commit": header.parentCommit,
    }
    if ctx.flag("create_pr"):
        new, pr_num = ctx.hub.discussions.commit_as_pr(ctx.repo_type, ctx.repo_id, **kwargs)
    else:
        new = ctx.hub.repos.commit(ctx.repo_type, ctx.repo_id, **kwargs)
        if rev.startswith("refs/pr/") and rev[8:].isdigit():
            ctx.hub.discussions.record_commit(
                ctx.repo_type, ctx.repo_id, int(rev[8:]), new, who.user
            )
    url = ctx.repo_url()
    return json_response(
        {
            "success": True,
            "commitOid": new.id,
            "commitUrl": f"{url}/commit/{new.id}",
            "pullRequestUrl": f"{url}/discussions/{pr_num}" if pr_num else None,
        }
    )


ROUTES = [commit]
