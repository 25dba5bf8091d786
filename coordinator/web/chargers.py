"""The API's OCPP chargers routes (:mod:`coordinator.chargers`), operators only, as ``peergrid
charger`` does from the command line:

- ``GET /api/chargers``: every charger (``?member=``: one member's) with its member, state and
  reason, when it was last heard from, protocol, vendor and model, whether a password is set and
  when (never its hash), the open session (start, energy so far), the newest profile sent (limit,
  when, the charger's answer), and its newest meter cross-checks against its member's board;
- ``PUT /api/chargers/{charger}`` ``{"member": "alice"}``: bind (or move) a charger with a new
  password, returned once in the answer (``"password": "..."`` in the body: that one instead);
- ``POST /api/chargers/{charger}/password``: a new password (body optional; ``{"password":
  "..."}``: that one), returned once when generated; the old one is refused from then on;
- ``DELETE /api/chargers/{charger}``: unbind (the charger is refused from then on).

The passwords are generated and checked by :mod:`coordinator.chargers.auth` (as the CLI's); the
running central system disconnects a connected charger whose binding or password changed within
10 s. Bad input gets 400 (a bad id, body, member or password), 404 (a charger not bound) or 413
(a body over ``MAX_BODY``), counted as ``bad_charger`` and logged; a member's token gets 403
(``operator_only``). A change is logged with who made it (``api:operator``); the ledger keeps when
(``bound_at``, ``password_set``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from coordinator.chargers import ChargerError
from coordinator.chargers.auth import given_or_new
from coordinator.chargers.service import CHECK_BACK, NotBound, bind, check_id, set_password, unbind
from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q
from coordinator.web.p2s import json_body

if TYPE_CHECKING:  # api imports this module for its routes
    from coordinator.web.api import Site

log = logging.getLogger("peergrid.web")
MAX_BODY = 1024  # {"member": ..., "password": ...} fits many times over
BY = "api:operator"
REASON = "bad_charger"


def _site(request: web.Request) -> Site:
    from coordinator.web.api import SITE

    return request.app[SITE]


def _operator_only(request: web.Request, site: Site, what: str) -> web.Response | None:
    from coordinator.web.api import PRINCIPAL

    if PRINCIPAL.get().operator:
        return None
    return site.refuse(request, 403, "operator_only", f"only an operator's token {what}")


def describe(ledger: Ledger, c: q.Charger) -> dict[str, Any]:
    """One charger as ``GET /api/chargers`` shows it."""
    cid = c.charger_id
    session = None
    s = q.open_session(ledger, cid)
    if s is not None:
        tx, start, meter_start = s
        e = q.last_energy_wh(ledger, cid)
        session = {
            "tx_id": tx,
            "start": start,
            "meter_start_wh": meter_start,
            "energy_wh": max(0, (meter_start if e is None else e) - meter_start),
        }
    p = q.last_profile(ledger, cid)
    profile = (
        None
        if p is None
        else {"interval": p[0], "limit_ma": p[1], "kind": p[2], "status": p[3], "sent": p[4]}
    )
    checks = [
        {"interval": iv, "charger_mwh": cm, "board_mwh": bm, "agreed": ok}
        for iv, cm, bm, ok in q.recent_checks(ledger, cid, CHECK_BACK)
    ]
    return {
        "id": cid,
        "member": c.member_id,
        "bound_at": c.bound_at,
        "state": c.state,
        "reason": c.reason,
        "last_seen": c.last_seen,
        "protocol": c.protocol,
        "vendor": c.vendor,
        "model": c.model,
        "has_password": c.password_set is not None,
        "password_set": c.password_set,
        "session": session,
        "profile": profile,
        "checks": checks,
        "disagreements": sum(1 for x in checks if not x["agreed"]),
    }


async def list_chargers(request: web.Request) -> web.Response:
    site = _site(request)
    refused = _operator_only(request, site, "reads the chargers")
    if refused is not None:
        return refused
    member = request.query.get("member")
    rows = [c for c in q.chargers(site.ledger) if member is None or c.member_id == member]
    return web.json_response([describe(site.ledger, c) for c in rows])


def _id(request: web.Request, site: Site) -> tuple[str, web.Response | None]:
    cid = request.match_info["charger"]
    try:
        return check_id(cid), None
    except ChargerError as e:
        return cid, site.refuse(request, 400, REASON, str(e))


def _fields(
    request: web.Request, site: Site, body: Any, allowed: tuple[str, ...], example: str
) -> tuple[dict[str, Any], web.Response | None]:
    """The body's fields: a JSON object of ``allowed`` keys, strings (or null: not given)."""
    if body is None:
        return {}, None
    if not isinstance(body, dict):
        return {}, site.refuse(request, 400, REASON, f"expected a JSON object {example}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        return {}, site.refuse(
            request, 400, REASON, f"unknown key {unknown[0]!r} (expected {', '.join(allowed)})"
        )
    for k, v in body.items():
        if v is not None and not isinstance(v, str):
            return {}, site.refuse(request, 400, REASON, f"{k} must be a string")
    return body, None


def _target(request: web.Request, what: str) -> tuple[Site, str] | web.Response:
    """The site and the charger id of an operator's write (``what`` it does, for the refusal);
    the refusal when the caller is not the operator or the id is bad."""
    site = _site(request)
    refused = _operator_only(request, site, what)
    if refused is not None:
        return refused
    cid, refused = _id(request, site)
    return (site, cid) if refused is None else refused


async def _body(
    request: web.Request, site: Site, allowed: tuple[str, ...], example: str, optional: bool
) -> tuple[dict[str, Any], web.Response | None]:
    """The request's JSON body checked by :func:`_fields` (none at all only when ``optional``)."""
    body, refused = await json_body(request, site, REASON, MAX_BODY, optional=optional)
    if refused is not None:
        return {}, refused
    if body is None and not optional:
        return {}, site.refuse(request, 400, REASON, f"expected a JSON object {example}")
    return _fields(request, site, body, allowed, example)


async def put_charger(request: web.Request) -> web.Response:
    t = _target(request, "binds chargers")
    if isinstance(t, web.Response):
        return t
    site, cid = t
    example = '{"member": "<member id>"} (optionally "password")'
    fields, refused = await _body(request, site, ("member", "password"), example, optional=False)
    if refused is not None:
        return refused
    member = fields.get("member")
    if member is None:
        return site.refuse(request, 400, REASON, f"member is missing: expected {example}")
    before = q.charger(site.ledger, cid)
    now = int(time.time())
    try:
        pw, generated = given_or_new(fields.get("password"))
        bind(site.ledger, cid, member, now, pw)
    except ChargerError as e:
        return site.refuse(request, 400, REASON, str(e))
    was = None if before is None else before.member_id
    log.info("charger %s bound to %s by %s (was: %s), with a new password", cid, member, BY, was or "unbound")
    return web.json_response(
        {
            "id": cid,
            "member": member,
            "previous_member": was,
            "bound_at": now,
            "password_set": now,
            "generated": generated,
            "password": pw if generated else None,  # shown once: the ledger keeps only its hash
        },
        status=201 if before is None else 200,
    )


async def post_password(request: web.Request) -> web.Response:
    t = _target(request, "sets chargers' passwords")
    if isinstance(t, web.Response):
        return t
    site, cid = t
    example = '{"password": "..."} or no body'
    fields, refused = await _body(request, site, ("password",), example, optional=True)
    if refused is not None:
        return refused
    c = q.charger(site.ledger, cid)
    if c is None:
        return site.refuse(request, 404, REASON, f"charger {cid!r} is not bound")
    now = int(time.time())
    try:
        pw, generated = given_or_new(fields.get("password"))
        set_password(site.ledger, cid, pw, now)
    except NotBound as e:
        return site.refuse(request, 404, REASON, str(e))
    except ChargerError as e:
        return site.refuse(request, 400, REASON, str(e))
    log.info("charger %s: new password set by %s; the old one is refused from now on", cid, BY)
    return web.json_response(
        {
            "id": cid,
            "member": c.member_id,
            "password_set": now,
            "generated": generated,
            "password": pw if generated else None,
        }
    )


async def delete_charger(request: web.Request) -> web.Response:
    t = _target(request, "unbinds chargers")
    if isinstance(t, web.Response):
        return t
    site, cid = t
    try:
        member = unbind(site.ledger, cid)
    except ChargerError as e:
        return site.refuse(request, 404, REASON, str(e))
    log.info("charger %s unbound from %s by %s", cid, member, BY)
    return web.json_response({"id": cid, "member": member, "unbound": True})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/chargers", list_chargers),
        web.put("/api/chargers/{charger}", put_charger),
        web.post("/api/chargers/{charger}/password", post_password),
        web.delete("/api/chargers/{charger}", delete_charger),
    ]
