"""The API's peer-to-system routes (:mod:`coordinator.p2s`): members' devices and preferences, and
grid operators' flexibility requests and capacity limits.

- ``GET /api/devices``: every member's devices in force and pending (a member's token: its own);
- ``GET /api/members/{member}/devices``: one member's, with its recorded changes (who, when);
- ``PUT /api/members/{member}/devices``: change them (the operator, or the member itself): a JSON
  object of preference keys merged into the newest ones (null removes a key; ``?replace=1``: the
  whole preferences), in force from the next interval;
- ``GET/POST /api/flex/requests``: flexibility requests (posting: operators only);
- ``GET/POST /api/flex/limits``: capacity limits (posting: operators only).

Bad input gets 400 naming what is wrong (404 for an unknown member, 409 for an overlapping or
taken request), counted by reason and logged; nothing is stored then.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from coordinator.ledger import flex_requests, member_changes
from coordinator.p2s import devices, limits, requests
from coordinator.p2s.errors import Conflict, P2sError, UnknownMember
from coordinator.web.auth import Principal

if TYPE_CHECKING:  # api imports this module for its routes
    from coordinator.web.api import Site

MAX_BODY = 64 * 1024


def _site(request: web.Request) -> Site:
    from coordinator.web.api import SITE

    return request.app[SITE]


def _who() -> Principal:
    from coordinator.web.api import PRINCIPAL

    return PRINCIPAL.get()


def _board_limits() -> requests.Limits:
    from coordinator.service.app import board_limits

    return board_limits()


async def json_body(
    request: web.Request, site: Site, reason: str, limit: int = MAX_BODY, optional: bool = False
) -> tuple[Any, web.Response | None]:
    """(the request's JSON body, None) or (None, the refusal: too large, not JSON); with
    ``optional`` an empty body is (None, None). Also read by :mod:`coordinator.web.chargers`."""
    if request.content_length is not None and request.content_length > limit:
        return None, site.refuse(request, 413, reason, f"the body is larger than {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        return None, site.refuse(request, 413, reason, f"the body is larger than {limit} bytes")
    if optional and not raw.strip():
        return None, None
    try:
        return json.loads(raw), None
    except (ValueError, UnicodeDecodeError) as e:
        return None, site.refuse(request, 400, reason, f"the body is not JSON: {e}")


def _refuse(request: web.Request, site: Site, reason: str, e: P2sError) -> web.Response:
    status = 404 if isinstance(e, UnknownMember) else 409 if isinstance(e, Conflict) else 400
    return site.refuse(request, status, reason, str(e))


async def all_devices(request: web.Request) -> web.Response:
    site, who = _site(request), _who()
    return web.json_response([d for d in devices.devices(site.ledger) if who.may_read(d["id"])])


async def member_devices(request: web.Request) -> web.Response:
    site = _site(request)
    m = request.match_info["member"]
    mine = [d for d in devices.devices(site.ledger) if d["id"] == m]
    if not mine:
        return site.refuse(request, 404, "unknown_member", f"no member {m!r}")
    changes = [c.as_dict() for c in member_changes.history(site.ledger, m)]
    return web.json_response({**mine[0], "changes": changes})


async def set_devices(request: web.Request) -> web.Response:
    site, who = _site(request), _who()
    m = request.match_info["member"]
    body, refused = await json_body(request, site, "bad_devices")
    if refused is not None:
        return refused
    by = "api:operator" if who.operator else f"api:member:{who.member}"
    try:
        c = devices.change(
            site.ledger,
            m,
            body,
            by=by,
            now=int(time.time()),
            length=site.length,
            limits=_board_limits(),
            replace=request.query.get("replace") in ("1", "true"),
        )
    except P2sError as e:
        return _refuse(request, site, "bad_devices", e)
    return web.json_response(c.as_dict(), status=201)


async def list_requests(request: web.Request) -> web.Response:
    site = _site(request)
    state = request.query.get("state")
    if state is not None and state not in flex_requests.STATES:
        return site.refuse(
            request, 400, "bad_request", f"state must be one of {', '.join(flex_requests.STATES)}"
        )
    return web.json_response([r.as_dict() for r in flex_requests.requests(site.ledger, state)])


async def post_request(request: web.Request) -> web.Response:
    site, who = _site(request), _who()
    if not who.operator:
        return site.refuse(
            request, 403, "operator_only", "only an operator's token posts flexibility requests"
        )
    body, refused = await json_body(request, site, "bad_flex_request")
    if refused is not None:
        return refused
    try:
        r = requests.post(
            site.ledger,
            body,
            grid=site.grid,
            now=int(time.time()),
            length=site.length,
            source="api:operator",
            limits=_board_limits(),
        )
    except P2sError as e:
        return _refuse(request, site, "bad_flex_request", e)
    return web.json_response(r.as_dict(), status=201)


async def list_limits(request: web.Request) -> web.Response:
    site = _site(request)
    return web.json_response([x.__dict__ for x in flex_requests.limits(site.ledger, site.as_of())])


async def post_limit(request: web.Request) -> web.Response:
    site, who = _site(request), _who()
    if not who.operator:
        return site.refuse(request, 403, "operator_only", "only an operator's token sets capacity limits")
    body, refused = await json_body(request, site, "bad_limit")
    if refused is not None:
        return refused
    try:
        lim, new = limits.add(site.ledger, body, grid=site.grid, now=int(time.time()), source="api:operator")
    except P2sError as e:
        return _refuse(request, site, "bad_limit", e)
    if not new:
        return site.refuse(request, 409, "bad_limit", f"capacity limit {lim.limit_id!r} exists already")
    return web.json_response(lim.__dict__, status=201)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/devices", all_devices),
        web.get("/api/members/{member}/devices", member_devices),
        web.put("/api/members/{member}/devices", set_devices),
        web.get("/api/flex/requests", list_requests),
        web.post("/api/flex/requests", post_request),
        web.get("/api/flex/limits", list_limits),
        web.post("/api/flex/limits", post_limit),
    ]
