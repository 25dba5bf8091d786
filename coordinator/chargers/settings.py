"""The ``[ocpp]`` section of the coordinator's config::

[ocpp]
listen = "0.0.0.0:9000"     # chargers connect to ws://<host>:9000/<charger id>
heartbeat_s = 60            # the heartbeat interval each charger is told at boot
silent_s = 180              # nothing heard for this long: the charger is silent
tolerance_wh = 50           # cross-check: charger energy beyond the board's import by more than
tolerance_pct = 5           # this (plus the percentage) is a disagreement
tls_cert = "ocpp-cert.pem"  # with tls_key: wss:// (OCPP security profile 2); the certificate chain
tls_key = "ocpp-key.pem"    # and its private key, PEM (relative paths: to the config's directory)
[ocpp.chargers]             # bindings made at start (peergrid charger bind adds more)
CP1 = { member = "alice", password_file = "cp1.password" }  # 16..40 printable ASCII
CP2 = "bob"                 # bound without a password: refused until one is set

Every charger authenticates with HTTP Basic (user = its id, password = the one set for it); the
password files are read and checked here, at config load, and the certificate chain is loaded
once to check it.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.chargers import ChargerError
from coordinator.chargers.auth import read_password_file

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
    # charger id -> its password from ``password_file`` (set at start; hashed in the ledger)
    passwords: dict[str, str] = field(default_factory=dict, repr=False)
    tls_cert: Path | None = None  # with tls_key: the server speaks TLS (wss://)
    tls_key: Path | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)

    @property
    def scheme(self) -> str:
        return "ws" if self.tls_cert is None else "wss"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (None without ``tls_cert``)."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return _tls_context(self.tls_cert, self.tls_key)


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security profile 2: TLS 1.2 or later
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ChargerError(
            f"ocpp.tls_cert/tls_key: {cert} and {key} do not load as a PEM certificate chain and its "
            f"private key: {getattr(e, 'strerror', None) or e}"
        ) from None
    return ctx


def _path(v: object, key: str, base: Path | None) -> Path:
    if not isinstance(v, str) or not v:
        raise ChargerError(f"{key} must be a file path, got {v!r}")
    p = Path(v)
    p = p if p.is_absolute() or base is None else base / p
    if not p.is_file():
        raise ChargerError(f"{key}: {p} does not exist")
    return p


def _binding(cid: str, v: object, base: Path | None) -> tuple[str, str | None]:
    """(member, password or None) of one ``[ocpp.chargers]`` entry."""
    where = f"ocpp.chargers.{cid}"
    if isinstance(v, str) and v:
        return v, None
    if not isinstance(v, dict):
        raise ChargerError(
            f'{where} must be a member id or {{ member = "...", password_file = "..." }}, got {v!r}'
        )
    unknown = set(v) - {"member", "password_file"}
    if unknown:
        raise ChargerError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    member = v.get("member")
    if not isinstance(member, str) or not member:
        raise ChargerError(f"{where}.member must be a member id, got {member!r}")
    if "password_file" not in v:
        return member, None
    return member, read_password_file(_path(v["password_file"], f"{where}.password_file", base))


def _int(t: dict[str, Any], key: str, lo: int, hi: int, default: int) -> int:
    v = t.get(key, default)
    if type(v) is not int or not lo <= v <= hi:
        raise ChargerError(f"ocpp.{key} must be an integer {lo}..{hi}, got {v!r}")
    return v


def parse(t: object, base: Path | None = None) -> OcppSettings | None:
    """The ``[ocpp]`` table (None without ``listen``); :class:`ChargerError` names the bad key.
    Relative file paths are taken from ``base`` (the config's directory)."""
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
        "tls_cert",
        "tls_key",
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
    bindings: dict[str, str] = {}
    passwords: dict[str, str] = {}
    for cid, v in binds.items():
        if not CHARGER_ID.match(cid):
            raise ChargerError(f"ocpp.chargers: {cid!r} is not a charger id ([A-Za-z0-9_.:-], 1-48)")
        bindings[cid], pw = _binding(cid, v, base)
        if pw is not None:
            passwords[cid] = pw
    if ("tls_cert" in t) != ("tls_key" in t):
        raise ChargerError("ocpp.tls_cert and ocpp.tls_key go together (the certificate chain and its key)")
    cert = key = None
    if "tls_cert" in t:
        cert = _path(t["tls_cert"], "ocpp.tls_cert", base)
        key = _path(t["tls_key"], "ocpp.tls_key", base)
        _tls_context(cert, key)
    hb = _int(t, "heartbeat_s", 10, 86_400, 60)
    return OcppSettings(
        listen,
        heartbeat_s=hb,
        silent_s=_int(t, "silent_s", hb, 7 * 86_400, max(180, 3 * hb)),
        tolerance_wh=_int(t, "tolerance_wh", 0, 1_000_000, 50),
        tolerance_pct=_int(t, "tolerance_pct", 0, 100, 5),
        response_s=_int(t, "response_s", 1, 300, 10),
        bindings=bindings,
        passwords=passwords,
        tls_cert=cert,
        tls_key=key,
    )
