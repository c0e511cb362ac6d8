"""Admin routes: set, inspect and clear fault-injection rules.

Faults change what every caller of the server sees, so they need an admin: a token whose role
is `admin`, or a write token of a user listed under `admins:` in the hub config (the
config-less local hub's generated token is admin)."""

from __future__ import annotations

from starlette.responses import Response

from bot.hub import shapes
from bot.hub.errors import BadRequest, Forbidden, Unauthorized
from bot.hub.http import Ctx, json_response, route


def _admin(ctx: Ctx) -> None:
    if ctx.who is None:
        raise Unauthorized("admin routes need a token")
    if not ctx.who.admin:
        raise Forbidden("admin routes need an admin token (role: admin, or a user in `admins`)")


@route("GET,POST,DELETE", "/admin/faults", "admin-faults", token=True)
def faults(ctx: Ctx) -> Response:
    """POST {"rules": [...]} replaces the rules (counters restart); DELETE clears them."""
    _admin(ctx)
    method = ctx.request.method
    if method == "POST":
        body = ctx.parse(shapes.FaultRules)
        try:
            ctx.hub.faults.set(body.rules)
        except (TypeError, ValueError, KeyError) as exc:
            raise BadRequest(f"invalid fault rules: {exc}") from exc
    elif method == "DELETE":
        ctx.hub.faults.clear()
    return json_response({"rules": ctx.hub.faults.snapshot()})


ROUTES = [faults]
