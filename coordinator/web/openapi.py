"""The OpenAPI 3.1 document of the dashboard's API, served at /api/openapi.json.

Written out by hand (it is the API's documentation); a test holds it to the server's routes.
"""

from __future__ import annotations

from typing import Any

from coordinator import __version__
from coordinator.web import openapi_chargers, openapi_p2s

_MEMBER = {"name": "member", "in": "path", "required": True, "schema": {"type": "string"}}
_HOURS = {"name": "hours", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 6}}
_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}
_PERIOD = {
    "name": "period",
    "in": "query",
    "description": "YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD (local days of [billing] timezone, end "
    "exclusive); default: this month",
    "schema": {"type": "string"},
}
_AS_MEMBER = {
    "name": "member",
    "in": "query",
    "description": "operators: limit to one member (a member's token is always limited to its member)",
    "schema": {"type": "string"},
}
_ERRORS = {
    "400": {"description": "bad request: the error names the problem"},
    "401": {"description": "no valid access token"},
    "403": {"description": "the token may not read this member"},
}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


def _get(
    summary: str, params: list[dict[str, Any]], ok: dict[str, Any], public: bool = False
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": {"200": ok}}
    if public:
        op["security"] = []
    else:
        op["responses"].update(_ERRORS)
    return {"get": op}


def document() -> dict[str, Any]:
    html = {"description": "HTML page", "content": {"text/html": {}}}
    paths: dict[str, Any] = {
        "/": _get("The dashboard page", [], html, public=True),
        "/static/{name}": _get(
            "The dashboard's scripts and style sheet",
            [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            {"description": "file", "content": {"text/javascript": {}, "text/css": {}}},
            public=True,
        ),
        "/api/openapi.json": _get("This document", [], _json("OpenAPI 3.1 document"), public=True),
        "/api/me": _get("Who the token belongs to: role operator or member", [], _json("role, member, grid")),
        "/api/members": _get(
            "Members the token may read",
            [],
            _json("members", {"type": "array", "items": {"type": "object"}}),
        ),
        "/api/microgrid": _get(
            "The community's total power flow (import, export, net W per time bucket)",
            [_HOURS],
            _json("t (Unix s), import, export, net (W)"),
        ),
        "/api/power": _get(
            "Power flow per member (W, + import) per time bucket, and the microgrid total",
            [_HOURS, _AS_MEMBER],
            _json("t, members {id: [W]}, microgrid [W]"),
        ),
        "/api/market": _get(
            "Recent intervals (clearing price, local and supplier volumes) and the latest interval's bids",
            [_LIMIT, _AS_MEMBER],
            _json("intervals, current, bids"),
        ),
        "/api/trades": _get(
            "Recent trades (mWh, mc/kWh), newest first",
            [_LIMIT, _AS_MEMBER],
            _json("trades", {"type": "array", "items": {"type": "object"}}),
        ),
        "/api/grid": _get(
            "Grid state: each board's voltage (mV) and power; PV export limits and device redispatches "
            "with their reasons; per checked interval the lowest/highest voltage (pu) and the most "
            "loaded line and transformer (%)",
            [_LIMIT, _AS_MEMBER],
            _json("boards, curtailments, redispatches, checks"),
        ),
        "/api/boards": _get(
            "Board health: online, last reading; rejected messages per reason (operators)",
            [_AS_MEMBER],
            _json("as_of, boards, rejections"),
        ),
        "/api/disputes": _get(
            "Disputes with their evidence",
            [_AS_MEMBER],
            _json("disputes", {"type": "array", "items": {"type": "object"}}),
        ),
        "/api/export/{kind}.csv": _get(
            "CSV export of readings, trades or bills (exact integers: mWh, mc/kWh, nano-cent)",
            [
                {
                    "name": "kind",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["readings", "trades", "bills"]},
                },
                _PERIOD,
                _AS_MEMBER,
            ],
            {"description": "CSV", "content": {"text/csv": {}}},
        ),
        "/api/members/{member}/power": _get(
            "One member's power flow", [_MEMBER, _HOURS], _json("t, members, microgrid (the member's)")
        ),
        "/api/invoices": _get(
            "Issued invoices the token may read (`peergrid bill --issue`), by number",
            [_AS_MEMBER],
            _json(
                "number, member, period, total (nano-cent), currency, bundle_sha256, sha256",
                {"type": "array"},
            ),
        ),
        "/api/invoices/{number}": _get(
            "One issued invoice as its immutable HTML document",
            [{"name": "number", "in": "path", "required": True, "schema": {"type": "string"}}],
            html,
        ),
        "/api/members/{member}/bill": _get(
            "One member's running bill: lines per account and the running total per interval",
            [_MEMBER, _PERIOD],
            _json("lines, total (nano-cent), total_cents, running"),
        ),
        "/api/members/{member}/audit": _get(
            "One member's audit bundle (check it with `peergrid audit verify`)",
            [_MEMBER, _PERIOD],
            _json("peergrid-audit/1 bundle"),
        ),
        "/api/members/{member}/disputes": {
            **_get(
                "One member's disputes",
                [_MEMBER],
                _json("disputes", {"type": "array", "items": {"type": "object"}}),
            ),
            "post": {
                "summary": "Flag an interval: the dispute records the evidence as it stands",
                "parameters": [_MEMBER],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["interval", "reason"],
                                "properties": {
                                    "interval": {"type": "integer", "description": "interval start, Unix s"},
                                    "reason": {"type": "string", "maxLength": 500},
                                },
                            }
                        }
                    },
                },
                "responses": {"201": _json("the dispute with its evidence"), **_ERRORS},
            },
        },
        "/api/quarantine": _get(
            "Readings held in quarantine (energy beyond the board's connection limit, and the "
            "board's readings after it), operators only",
            [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["held", "released", "rejected", "all"]},
                }
            ],
            _json("readings", {"type": "array", "items": {"type": "object"}}),
        ),
        "/api/quarantine/{board}/{action}": {
            "post": {
                "summary": "Release a board's held readings (stored as readings) or reject them (the "
                "board is then refused until retired or replaced), operators only",
                "parameters": [
                    {"name": "board", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["release", "reject"]},
                    },
                ],
                "responses": {
                    "200": _json("board, action, readings"),
                    "409": {"description": "the board has no readings held"},
                    **_ERRORS,
                },
            }
        },
    }
    paths.update(openapi_p2s.paths())
    paths.update(openapi_chargers.paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "peergrid dashboard API",
            "version": __version__,
            "description": "Energy in mWh, power in W, voltage in mV, prices in milli-cent/kWh, money in "
            "nano-cent, times in Unix seconds (UTC). A member's token reads only that member's data.",
        },
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"token": []}],
        "paths": paths,
    }
