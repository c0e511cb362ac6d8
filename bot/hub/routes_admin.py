"""Admin routes: set, inspect and clear fault-injection rules (write token required)."""

from __future__ import annotations

from starlette.responses import Response

from bot.hub.auth import Forbidden, Unauthorized
from bot.hub.http import Ctx, json_response, route
from bot.hub.storage import BadRequest


def _admin(ctx: Ctx) -> None:
    if ctx.who is None:
        raise Unauthorized("admin routes need a token")
    if not ctx.who.can_write:
        raise Forbidden("admin routes need a write token")


@route("GET,POST,DELETE", "/admin/faults", "admin-faults")
def faults(ctx: Ctx) -> Response:
    """POST {"rules": [...]} replaces the rules (counters restart); DELETE clears them."""
    _admin(ctx)
    method = ctx.request.method
    if method == "POST":
        body = ctx.json() or {}
        rules = body.get("rules") if isinstance(body, dict) else body
        if not isinstance(rules, list):
            raise BadRequest('expected {"rules": [...]}')
        try:
            ctx.hub.faults.set(rules)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"invalid fault rules: {exc}") from exc
    elif method == "DELETE":
        ctx.hub.faults.clear()
    return json_response({"rules": ctx.hub.faults.snapshot()})


ROUTES = [faults]
