"""The OpenAPI paths of the OCPP chargers' routes (:mod:`coordinator.web.chargers`), merged into the
API's document (:mod:`coordinator.web.openapi`)."""

from __future__ import annotations

from typing import Any

_CHARGER = {
    "name": "charger",
    "in": "path",
    "required": True,
    "description": "the charger's OCPP identity (the last part of its URL, also its Basic auth user)",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,48}$"},
}
_ERRORS = {
    "400": {"description": "bad input: the error names the id, key, member or password at fault"},
    "401": {"description": "no valid access token"},
    "403": {"description": "operators only"},
    "413": {"description": "the body is larger than 1024 bytes"},
}
_T = {"type": ["integer", "null"], "description": "Unix s"}
_PASSWORD = {
    "type": "string",
    "minLength": 16,
    "maxLength": 40,
    "pattern": "^[!-~]{16,40}$",
    "description": "16..40 printable ASCII characters without spaces",
}
_CHARGER_VIEW = {
    "type": "object",
    "required": ["id", "member", "state", "has_password", "session", "profile", "checks", "disagreements"],
    "properties": {
        "id": {"type": "string"},
        "member": {"type": "string"},
        "bound_at": {"type": "integer"},
        "state": {"type": "string", "enum": ["online", "silent", "refused", "unseen", "offline"]},
        "reason": {"type": ["string", "null"]},
        "last_seen": _T,
        "protocol": {"type": ["string", "null"], "enum": ["ocpp1.6", "ocpp2.0.1", None]},
        "vendor": {"type": ["string", "null"]},
        "model": {"type": ["string", "null"]},
        "has_password": {"type": "boolean", "description": "false: the charger is refused"},
        "password_set": {**_T, "description": "when its password was set (never the password or hash)"},
        "session": {
            "type": ["object", "null"],
            "description": "the open charging session",
            "properties": {
                "tx_id": {"type": "integer"},
                "start": {"type": "integer"},
                "meter_start_wh": {"type": "integer"},
                "energy_wh": {"type": "integer", "description": "delivered so far (charger's register)"},
            },
        },
        "profile": {
            "type": ["object", "null"],
            "description": "the newest charging profile sent, with the charger's answer",
            "properties": {
                "interval": {"type": "integer"},
                "limit_ma": {"type": "integer", "description": "per phase"},
                "kind": {"type": "string", "enum": ["TxProfile", "TxDefaultProfile"]},
                "status": {"type": "string", "description": "Accepted, Rejected, NoAnswer, Error:..."},
                "sent": {"type": "integer"},
            },
        },
        "checks": {
            "type": "array",
            "description": "the newest cross-checks of its energy against its member's board (settled "
            "intervals, oldest first)",
            "items": {
                "type": "object",
                "properties": {
                    "interval": {"type": "integer"},
                    "charger_mwh": {"type": "integer"},
                    "board_mwh": {"type": "integer"},
                    "agreed": {"type": "boolean"},
                },
            },
        },
        "disagreements": {"type": "integer", "description": "checks in `checks` that disagreed"},
    },
}
_ANSWER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "member": {"type": "string"},
        "password_set": {"type": "integer"},
        "generated": {"type": "boolean"},
        "password": {
            "type": ["string", "null"],
            "description": "the generated password, shown this once (null when given in the body)",
        },
    },
}

_BIND = {
    "type": "object",
    "properties": {
        **_ANSWER["properties"],
        "previous_member": {"type": ["string", "null"]},
        "bound_at": {"type": "integer"},
    },
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any], required: bool) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def paths() -> dict[str, Any]:
    not_bound = {"404": {"description": "the charger is not bound"}}
    return {
        "/api/chargers": {
            "get": {
                "summary": "The OCPP chargers (operators only): member, state, last seen, password set "
                "and when, open session, newest profile, meter cross-checks",
                "parameters": [
                    {
                        "name": "member",
                        "in": "query",
                        "description": "limit to one member's chargers",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json("chargers", {"type": "array", "items": _CHARGER_VIEW}),
                    **_ERRORS,
                },
            }
        },
        "/api/chargers/{charger}": {
            "put": {
                "summary": "Bind a charger to a member, or move it, with a new password (operators only); "
                "a generated password is in the answer, once",
                "parameters": [_CHARGER],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["member"],
                        "additionalProperties": False,
                        "properties": {
                            "member": {"type": "string"},
                            "password": {**_PASSWORD, "description": "this one instead of a new one"},
                        },
                    },
                    True,
                ),
                "responses": {
                    "201": _json("bound (it was not)", _BIND),
                    "200": _json("bound again (moved from previous_member)", _BIND),
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Unbind a charger (operators only): it is refused from then on, a connected one "
                "disconnected within 10 s",
                "parameters": [_CHARGER],
                "responses": {
                    "200": _json("id, member (it was bound to), unbound", {"type": "object"}),
                    **not_bound,
                    **_ERRORS,
                },
            },
        },
        "/api/chargers/{charger}/password": {
            "post": {
                "summary": "A bound charger's new password (operators only), generated unless given; the "
                "old one is refused from then on, a charger connected with it disconnected within 10 s",
                "parameters": [_CHARGER],
                "requestBody": _body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"password": _PASSWORD},
                    },
                    False,
                ),
                "responses": {"200": _json("the new password's answer", _ANSWER), **not_bound, **_ERRORS},
            }
        },
    }
