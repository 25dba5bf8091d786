"""The operator's routes of the API: decisions only an operator's token may take. Today: readings
held in quarantine (listed, released or rejected; see :mod:`coordinator.ledger.quarantine`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from coordinator.ledger import LedgerError, quarantine
from coordinator.web.auth import Principal

if TYPE_CHECKING:  # api imports this module for its routes
    from coordinator.web.api import Site


def _site(request: web.Request) -> Site:
    from coordinator.web.api import SITE

    return request.app[SITE]


def _operator(request: web.Request) -> Principal | None:
    from coordinator.web.api import PRINCIPAL

    who = PRINCIPAL.get()
    return who if who.operator else None


async def held(request: web.Request) -> web.Response:
    site = _site(request)
    if _operator(request) is None:
        return site.refuse(request, 403, "operator_only", "only an operator's token reads the quarantine")
    state = request.query.get("state", "held")
    if state not in ("held", "released", "rejected", "all"):
        return site.refuse(request, 400, "bad_request", "state must be held, released, rejected or all")
    rows = quarantine.listing(site.ledger, state=None if state == "all" else state)
    return web.json_response([h.__dict__ for h in rows])


async def decide(request: web.Request) -> web.Response:
    site = _site(request)
    who = _operator(request)
    if who is None:
        return site.refuse(request, 403, "operator_only", "only an operator's token decides on quarantine")
    board, action = request.match_info["board"], request.match_info["action"]
    if action not in ("release", "reject"):
        return site.refuse(request, 404, "not_found", f"no action {action!r}: release or reject")
    fn = quarantine.release if action == "release" else quarantine.reject
    try:
        n = fn(site.ledger, board, by="api:operator", now=int(time.time()))
    except LedgerError as e:
        return site.refuse(request, 409, "nothing_held", str(e))
    return web.json_response({"board": board, "action": action, "readings": n})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/quarantine", held),
        web.post("/api/quarantine/{board}/{action}", decide),
    ]
