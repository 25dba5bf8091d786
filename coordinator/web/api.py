"""The dashboard's JSON API. Every route under /api except the OpenAPI document needs a token
(``Authorization: Bearer ...``); a member's token reads that member's routes and the community's
aggregates only, enforced here on the server for every request."""

from __future__ import annotations

import contextvars
import json
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger
from coordinator.ledger.queries import web as ledger_web
from coordinator.transaction import billing, export
from coordinator.transaction.audit import AuditError, bundle, dispute
from coordinator.web import chargers, openapi, operator, p2s, queries
from coordinator.web.auth import Principal, identify

log = logging.getLogger("peergrid.web")
STATIC = ("index.html", "app.js", "charts.js", "style.css")
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


@dataclass(frozen=True)
class Site:
    ledger: Ledger
    grid: str
    charges: bundle.Charges
    coordinator_key: bytes | None = None
    live: bool = True  # "now" is the clock; False: the newest reading (a stored ledger)
    length: int = 900  # the market interval, s (changes take effect from the next one)
    refused: dict[str, int] = field(default_factory=dict)  # refused requests per reason, since start

    def refuse(self, request: web.Request, status: int, reason: str, text: str) -> web.Response:
        """Count and log a refused request; the client gets the reason as JSON."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        # the path as sent (still percent-encoded) and quoted: a decoded one could forge log lines
        log.warning("%s %r refused (%d %s): %s", request.method, request.raw_path, status, reason, text)
        return _error(status, text)

    def as_of(self) -> int:
        if self.live:
            return int(time.time())
        return queries.newest_ts(self.ledger) or int(time.time())


SITE = web.AppKey("site", Site)
PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    path = request.path
    if not path.startswith("/api/") or path == "/api/openapi.json":
        resp: web.StreamResponse = await handler(request)
        return resp
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else ""
    site = request.app[SITE]
    who = identify(site.ledger, token) if token else None
    if who is None:
        return site.refuse(
            request, 401, "no_token", "a valid access token is required (Authorization: Bearer ...)"
        )
    member = request.match_info.get("member") or request.query.get("member")
    if member is not None and not who.may_read(member):
        return site.refuse(request, 403, "other_member", f"this token may not read member {member!r}")
    PRINCIPAL.set(who)  # the handler runs in this task: it sees this request's principal
    try:
        resp = await handler(request)
    except CoordinatorError as e:
        return site.refuse(request, 400, "bad_request", str(e))
    except web.HTTPClientError as e:
        return site.refuse(request, e.status, "bad_request", e.text or e.reason)
    return resp


def _who(request: web.Request) -> Principal:
    return PRINCIPAL.get()


def _scope(request: web.Request) -> str | None:
    """The member a list is limited to: the token's member, or for an operator ``?member=``."""
    who = _who(request)
    return who.member if who.member is not None else request.query.get("member")


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if not lo <= v <= hi:
        raise web.HTTPBadRequest(text=f"{name} must be {lo}..{hi}")
    return v


def _period(request: web.Request, site: Site) -> tuple[int, int]:
    """``?period=`` (default: this month), local days of the billing time zone."""
    zone = site.charges.timezone
    text = request.query.get("period")
    if text:
        return export.parse_period(text, zone)
    today = billing.local_day(site.as_of(), zone)
    return export.parse_period(f"{today.year:04d}-{today.month:02d}", zone)


def _member(site: Site, member: str) -> None:
    if not ledger_web.member_exists(site.ledger, member):
        raise web.HTTPNotFound(text=f"no member {member!r}")


async def me(request: web.Request) -> web.Response:
    who = _who(request)
    site = request.app[SITE]
    return web.json_response(
        {
            "role": "operator" if who.operator else "member",
            "member": who.member,
            "grid": site.grid,
            "as_of": site.as_of(),
        }
    )


async def members(request: web.Request) -> web.Response:
    who = _who(request)
    out = [
        {"id": m.id, "name": m.name, "role": m.role, "feeder": m.feeder}
        for m in request.app[SITE].ledger.members()
        if who.may_read(m.id)
    ]
    return web.json_response(out)


async def microgrid(request: web.Request) -> web.Response:
    site = request.app[SITE]
    hours = _int(request, "hours", 6, 1, 24 * 31)
    return web.json_response(queries.microgrid_power(site.ledger, site.as_of(), hours))


async def power(request: web.Request) -> web.Response:
    site = request.app[SITE]
    hours = _int(request, "hours", 6, 1, 24 * 31)
    return web.json_response(queries.power(site.ledger, site.as_of(), hours, _scope(request)))


async def member_power(request: web.Request) -> web.Response:
    site = request.app[SITE]
    m = request.match_info["member"]
    _member(site, m)
    hours = _int(request, "hours", 6, 1, 24 * 31)
    return web.json_response(queries.power(site.ledger, site.as_of(), hours, m))


async def market(request: web.Request) -> web.Response:
    site = request.app[SITE]
    n = _int(request, "limit", 48, 1, 2000)
    ivs = queries.intervals(site.ledger, n)
    current = ivs[-1] if ivs else None
    return web.json_response(
        {
            "intervals": ivs,
            "current": current,
            "bids": queries.bids(site.ledger, current["start"], _scope(request)) if current else [],
        }
    )


async def trades(request: web.Request) -> web.Response:
    site = request.app[SITE]
    n = _int(request, "limit", 100, 1, 10_000)
    return web.json_response(queries.trades(site.ledger, n, _scope(request)))


async def grid(request: web.Request) -> web.Response:
    site = request.app[SITE]
    return web.json_response(
        queries.grid_state(site.ledger, _scope(request), _int(request, "limit", 50, 1, 1000))
    )


async def boards(request: web.Request) -> web.Response:
    site = request.app[SITE]
    return web.json_response(queries.health(site.ledger, site.as_of(), _scope(request)))


async def member_bill(request: web.Request) -> web.Response:
    site = request.app[SITE]
    m = request.match_info["member"]
    _member(site, m)
    start, end = _period(request, site)
    ch = site.charges
    return web.json_response(
        queries.bill(site.ledger, m, start, end, ch.fixed_per_day, ch.contracts, ch.timezone)
    )


async def member_disputes(request: web.Request) -> web.Response:
    site = request.app[SITE]
    m = request.match_info["member"]
    _member(site, m)
    return web.json_response([d.as_dict() for d in dispute.disputes(site.ledger, m)])


async def flag_dispute(request: web.Request) -> web.Response:
    site = request.app[SITE]
    m = request.match_info["member"]
    _member(site, m)
    try:
        body = await request.json()
        interval, reason = body["interval"], body["reason"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return site.refuse(
            request, 400, "bad_dispute", 'expected a JSON object {"interval": <start>, "reason": "..."}'
        )
    if type(interval) is not int or not 0 <= interval <= 0xFFFFFFFF or not isinstance(reason, str):
        return site.refuse(
            request,
            400,
            "bad_dispute",
            "interval must be an integer (the interval's start, Unix seconds) and reason a string",
        )
    try:
        d = dispute.flag(site.ledger, m, interval, reason, now=int(time.time()))
    except AuditError as e:
        return site.refuse(request, 400, "bad_dispute", str(e))
    return web.json_response(d.as_dict(), status=201)


async def disputes(request: web.Request) -> web.Response:
    site = request.app[SITE]
    return web.json_response([d.as_dict() for d in dispute.disputes(site.ledger, _scope(request))])


async def member_audit(request: web.Request) -> web.Response:
    site = request.app[SITE]
    m = request.match_info["member"]
    _member(site, m)
    if site.coordinator_key is None:
        return _error(404, "this dashboard has no coordinator key to name in a bundle")
    start, end = _period(request, site)
    known = {x.id: x for x in site.ledger.members()}
    charges = bundle.Charges(
        site.charges.tariff,
        site.charges.fixed_per_day,
        billing.subscription_per_day(known[m]),
        site.charges.contracts,
        site.charges.timezone,
    )
    b = bundle.bundle(site.ledger, site.grid, m, start, end, charges, site.coordinator_key)
    return web.json_response(b)


async def invoices(request: web.Request) -> web.Response:
    """The issued invoices the token may read (an operator's: all, or ``?member=``'s), by number."""
    from coordinator.transaction import invoice

    site = request.app[SITE]
    docs = invoice.documents(site.ledger, _scope(request))
    return web.json_response(
        [
            {
                "number": d.number,
                "member": d.member,
                "period": d.period,
                "start": d.start,
                "end": d.end,
                "timezone": d.timezone,
                "total": d.total,
                "currency": d.currency,
                "bundle_sha256": d.bundle_sha256,
                "sha256": d.sha256,
                "created": d.created,
            }
            for d in docs
        ]
    )


async def invoice_document(request: web.Request) -> web.Response:
    """One issued invoice's document (HTML), as stored when it was issued."""
    from coordinator.transaction import invoice

    site = request.app[SITE]
    number = request.match_info["number"]
    d = invoice.document(site.ledger, number)
    who = _who(request)
    if d is None or (who.member is not None and who.member != d.member):
        raise web.HTTPNotFound(text=f"no invoice {number!r}")
    return web.Response(body=d.html, content_type="text/html", charset="utf-8", headers={"ETag": d.sha256})


async def export_csv(request: web.Request) -> web.Response:
    site = request.app[SITE]
    kind = request.match_info["kind"]
    if kind not in export.KINDS:
        raise web.HTTPNotFound(text=f"no export {kind!r}")
    start, end = _period(request, site)
    ch = site.charges
    text = export.export_csv(
        site.ledger, kind, start, end, _scope(request), ch.fixed_per_day, ch.contracts, ch.timezone
    )
    return web.Response(
        text=text,
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="peergrid-{kind}.csv"'},
    )


async def openapi_doc(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


async def index(request: web.Request) -> web.Response:
    return _static("index.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return _static(name)


def _static(name: str) -> web.Response:
    data = resources.files("coordinator.web").joinpath("static", name).read_bytes()
    ext = name[name.rfind(".") :]
    return web.Response(
        body=data, content_type=TYPES[ext], charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", index),
        web.get("/static/{name}", static),
        web.get("/api/openapi.json", openapi_doc),
        web.get("/api/me", me),
        web.get("/api/members", members),
        web.get("/api/microgrid", microgrid),
        web.get("/api/power", power),
        web.get("/api/market", market),
        web.get("/api/trades", trades),
        web.get("/api/grid", grid),
        web.get("/api/boards", boards),
        web.get("/api/disputes", disputes),
        web.get("/api/export/{kind}.csv", export_csv),
        web.get("/api/invoices", invoices),
        web.get("/api/invoices/{number}", invoice_document),
        web.get("/api/members/{member}/power", member_power),
        web.get("/api/members/{member}/bill", member_bill),
        web.get("/api/members/{member}/audit", member_audit),
        web.get("/api/members/{member}/disputes", member_disputes),
        web.post("/api/members/{member}/disputes", flag_dispute),
        *operator.routes(),
        *p2s.routes(),
        *chargers.routes(),
    ]
