"""The OpenAPI paths of the peer-to-system routes (:mod:`coordinator.web.p2s`), merged into the
API's document (:mod:`coordinator.web.openapi`)."""

from __future__ import annotations

from typing import Any

_MEMBER = {"name": "member", "in": "path", "required": True, "schema": {"type": "string"}}
_ERRORS = {
    "400": {"description": "bad input: the error names the member and field, or the request's field"},
    "401": {"description": "no valid access token"},
    "403": {"description": "the token may not do this (operators only, or another member)"},
}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_TIME = {"oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]}
_PREFS = {
    "type": "object",
    "description": "preference keys (coordinator/members.py): min_sell, max_buy, subscription_per_day, "
    "storage (a battery, or kind ev with capacity_mwh, max_charge_w, target_soc, departure HH:MM UTC), "
    "ev (an integrator home's EV), deferrable {w, relay, hours}, pv {kwp}, "
    "flex {pv, battery, ev, load, price} "
    "(mc/kWh asked for flexibility), integrator {horizon}; null removes a key",
}
_REQUEST = {
    "type": "object",
    "required": ["congestion_point", "direction", "power_w", "start", "price_cap"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
        "congestion_point": {
            "type": "string",
            "description": "a feeder or bus of the members, or the grid id",
        },
        "direction": {"type": "string", "enum": ["reduce", "increase"], "description": "reduce: less import"},
        "power_w": {"type": "integer", "minimum": 1},
        "start": {**_TIME, "description": "an interval start in the future (Unix s or ISO 8601)"},
        "intervals": {"type": "integer", "minimum": 1, "description": "or end"},
        "end": {**_TIME, "description": "an interval start after start (or intervals)"},
        "price_cap": {"type": "integer", "minimum": 0, "description": "mc/kWh delivered, at most"},
    },
}
_LIMIT = {
    "type": "object",
    "required": ["resource", "direction", "limit_w", "start", "until"],
    "properties": {
        "id": {"type": "string"},
        "resource": {"type": "string", "description": "a feeder or bus, or the grid id (the connection)"},
        "direction": {"type": "string", "enum": ["import", "export"]},
        "limit_w": {"type": "integer", "minimum": 0},
        "start": _TIME,
        "until": _TIME,
    },
}


def paths() -> dict[str, Any]:
    return {
        "/api/devices": {
            "get": {
                "summary": "Every member's devices and preferences in force, and a change still pending",
                "parameters": [],
                "responses": {
                    "200": _json("members", {"type": "array", "items": {"type": "object"}}),
                    **_ERRORS,
                },
            }
        },
        "/api/members/{member}/devices": {
            "get": {
                "summary": "One member's devices and preferences, with its recorded changes (who, when)",
                "parameters": [_MEMBER],
                "responses": {
                    "200": _json("prefs, pending, changes"),
                    "404": {"description": "no member"},
                    **_ERRORS,
                },
            },
            "put": {
                "summary": "Change a member's devices and preferences (the operator or the member itself); "
                "in force from the next interval. ?replace=1: the body is the whole preferences",
                "parameters": [
                    _MEMBER,
                    {"name": "replace", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}},
                ],
                "requestBody": _body(_PREFS),
                "responses": {
                    "201": _json("the recorded change: prefs, previous, changed_by, changed_at, effective"),
                    "404": {"description": "no member"},
                    **_ERRORS,
                },
            },
        },
        "/api/flex/requests": {
            "get": {
                "summary": "Flexibility requests: posted, cleared (orders sent), settled (delivered, paid) "
                "or failed, with what was ordered, delivered and paid",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(_STATES)}}
                ],
                "responses": {
                    "200": _json("requests", {"type": "array", "items": {"type": "object"}}),
                    **_ERRORS,
                },
            },
            "post": {
                "summary": "Post a flexibility request (operators only): cleared against the members' "
                "devices before its window, delivered in the boards' signed orders, verified and paid "
                "after it",
                "parameters": [],
                "requestBody": _body(_REQUEST),
                "responses": {
                    "201": _json("the accepted request"),
                    "409": {
                        "description": "it overlaps a request for its congestion point, or its id is taken"
                    },
                    **_ERRORS,
                },
            },
        },
        "/api/flex/limits": {
            "get": {
                "summary": "Capacity limits in force or ahead",
                "parameters": [],
                "responses": {
                    "200": _json("limits", {"type": "array", "items": {"type": "object"}}),
                    **_ERRORS,
                },
            },
            "post": {
                "summary": "Set a capacity limit on a congestion point or the connection (operators only)",
                "parameters": [],
                "requestBody": _body(_LIMIT),
                "responses": {
                    "201": _json("the limit"),
                    "409": {"description": "a limit with this id exists"},
                    **_ERRORS,
                },
            },
        },
    }


_STATES = ("posted", "cleared", "settled", "failed")
