"""Discussion and pull-request routes, shaped as the client's community.py parses them."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from bot.hub import shapes
from bot.hub.errors import BadRequest, Forbidden, Unauthorized
from bot.hub.http import API_REPO, Ctx, json_response, route

_NUM = r"/discussions/(?P<num>[0-9]{1,9})"


def _summary(ctx: Ctx, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "num": rec["num"],
        "title": rec["title"],
        "status": rec["status"],
        "isPullRequest": rec["isPullRequest"],
        "createdAt": rec["createdAt"],
        "author": {"name": rec["author"], "type": "user"},
        "repo": {"name": ctx.repo_id, "type": ctx.repo_type},
        "pinned": False,
        "numComments": sum(e["type"] == "comment" for e in rec["events"]),
        "topReactions": [],
    }


def _actor(ctx: Ctx) -> str:
    """Discussions need an authenticated caller with a write token (as on the Hub)."""
    if ctx.who is None:
        raise Unauthorized("You must be authenticated to take part in discussions")
    if not ctx.who.can_write:
        raise Forbidden("A write token is required to take part in discussions")
    return ctx.who.user


@route("GET", API_REPO + "/discussions", "discussions")
def list_discussions(ctx: Ctx) -> Response:
    ctx.repo()
    page = ctx.query_int("p", 0, lo=0, hi=1_000_000)
    recs, count, start = ctx.hub.discussions.listing(
        ctx.repo_type,
        ctx.repo_id,
        kind=ctx.query("type"),
        status=ctx.query("status"),
        author=ctx.query("author"),
        page=page,
    )
    return json_response(
        {
            "discussions": [_summary(ctx, r) for r in recs],
            "count": count,
            "start": start,
            "numClosedDiscussions": 0,
        }
    )


@route("POST", API_REPO + "/discussions", "create-discussion", token=True)
def create_discussion(ctx: Ctx) -> Response:
    ctx.repo()
    user = _actor(ctx)
    body = ctx.parse(shapes.NewDiscussion)
    title = body.title.strip()
    if not title:
        raise BadRequest("title is required")
    rec = ctx.hub.discussions.create(
        ctx.repo_type,
        ctx.repo_id,
        title=title,
        description=body.description or "",
        author=user,
        pull_request=bool(body.pullRequest),
    )
    return json_response({"num": rec["num"], "url": f"{ctx.repo_url()}/discussions/{rec['num']}"})


@route("GET", API_REPO + _NUM, "discussion")
def discussion(ctx: Ctx) -> Response:
    ctx.repo()
    d = ctx.hub.discussions
    rec = d.get(ctx.repo_type, ctx.repo_id, int(ctx.params["num"]))
    data = _summary(ctx, rec)
    data["events"] = rec["events"]
    data["filesWithConflicts"] = []
    if rec["isPullRequest"]:
        data["changes"] = {
            "base": rec["base"],
            "mergeCommitId": rec.get("mergeCommitId"),
            "headRef": f"refs/pr/{rec['num']}",
        }
        if ctx.flag("diff"):
            data["diff"] = d.diff(ctx.repo_type, ctx.repo_id, rec)
    return json_response(data)


@route("POST", API_REPO + _NUM + "/comment", "comment", token=True)
def comment(ctx: Ctx) -> Response:
    ctx.repo()
    user = _actor(ctx)
    text = ctx.parse(shapes.Comment).comment
    event = ctx.hub.discussions.comment(
        ctx.repo_type, ctx.repo_id, int(ctx.params["num"]), user, text
    )
    return json_response({"newMessage": event})


@route("POST", API_REPO + _NUM + "/status", "status", token=True)
def status(ctx: Ctx) -> Response:
    meta = ctx.repo()
    user = _actor(ctx)
    num = int(ctx.params["num"])
    rec = ctx.hub.discussions.get(ctx.repo_type, ctx.repo_id, num)
    if rec["author"] != user:
        ctx.hub.accounts.require_write(ctx.who, meta.author)
    body = ctx.parse(shapes.StatusChange)
    event = ctx.hub.discussions.set_status(
        ctx.repo_type, ctx.repo_id, num, user, body.status, body.comment
    )
    return json_response({"newStatus": event})


@route("POST", API_REPO + _NUM + "/merge", "merge", token=True)
def merge(ctx: Ctx) -> Response:
    ctx.repo(write=True)
    assert ctx.who is not None  # token route
    body = ctx.parse(shapes.Merge)
    event = ctx.hub.discussions.merge(
        ctx.repo_type, ctx.repo_id, int(ctx.params["num"]), ctx.who.user, body.comment
    )
    return json_response({"newStatus": event})


ROUTES = [list_discussions, create_discussion, discussion, comment, status, merge]
