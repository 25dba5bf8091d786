"""The ``[ocpp]`` section of the coordinator's config::

[ocpp]
listen = "0.0.0.0:9000"     # chargers connect to ws://<host>:9000/<charger id>
heartbeat_s = 60            # the heartbeat interval each charger is told at boot
silent_s = 180              # nothing heard for this long: the charger is silent
tolerance_wh = 50           # cross-check: charger energy beyond the board's import by more than
tolerance_pct = 5           # this (plus the percentage) is a disagreement
[ocpp.chargers]             # bindings made at start (peergrid charger bind adds more)
CP1 = "alice"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from coordinator.chargers import ChargerError

CHARGER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,48}$")  # OCPP's chargeBoxIdentity (CiString48)


@dataclass(frozen=True)
class OcppSettings:
    listen: str
    heartbeat_s: int = 60
    silent_s: int = 180
    tolerance_wh: int = 50
    tolerance_pct: int = 5
    response_s: int = 10  # how long a charger may take to answer a profile
    bindings: dict[str, str] = field(default_factory=dict)  # charger id -> member id

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)


def _int(t: dict[str, Any], key: str, lo: int, hi: int, default: int) -> int:
    v = t.get(key, default)
    if type(v) is not int or not lo <= v <= hi:
        raise ChargerError(f"ocpp.{key} must be an integer {lo}..{hi}, got {v!r}")
    return v


def parse(t: object) -> OcppSettings | None:
    """The ``[ocpp]`` table (None without ``listen``); :class:`ChargerError` names the bad key."""
    if t is None:
        return None
    if not isinstance(t, dict):
        raise ChargerError(f"[ocpp] must be a table, got {t!r}")
    unknown = set(t) - {
        "listen",
        "heartbeat_s",
        "silent_s",
        "tolerance_wh",
        "tolerance_pct",
        "response_s",
        "chargers",
    }
    if unknown:
        raise ChargerError(f"ocpp: unknown key(s) {', '.join(sorted(unknown))}")
    listen = t.get("listen")
    if listen is None:
        return None
    host, _, port = str(listen).rpartition(":")
    if not isinstance(listen, str) or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ChargerError(f"ocpp.listen must be host:port, got {listen!r}")
    binds = t.get("chargers") or {}
    if not isinstance(binds, dict):
        raise ChargerError("ocpp.chargers must be a table of charger id = member id")
    for cid, member in binds.items():
        if not CHARGER_ID.match(cid):
            raise ChargerError(f"ocpp.chargers: {cid!r} is not a charger id ([A-Za-z0-9_.:-], 1-48)")
        if not isinstance(member, str) or not member:
            raise ChargerError(f"ocpp.chargers.{cid} must be a member id, got {member!r}")
    hb = _int(t, "heartbeat_s", 10, 86_400, 60)
    return OcppSettings(
        listen,
        heartbeat_s=hb,
        silent_s=_int(t, "silent_s", hb, 7 * 86_400, max(180, 3 * hb)),
        tolerance_wh=_int(t, "tolerance_wh", 0, 1_000_000, 50),
        tolerance_pct=_int(t, "tolerance_pct", 0, 100, 5),
        response_s=_int(t, "response_s", 1, 300, 10),
        bindings=dict(binds),
    )
