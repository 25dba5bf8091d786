"""``[openadr]``: poll a grid operator's VTN as a VEN.

[openadr]
vtn = "https://vtn.example-dso.eu/openadr3/3.0.1"   # the VTN's base URL
client_id = "peergrid-walenstadt"                    # OAuth2 client credentials (POST /auth/token)
client_secret_file = "openadr.secret"                # or client_secret = "..."
ven_name = "peergrid-walenstadt"                     # clientName of the reports
program = "congestion"                               # only this program's events (programName)
poll_s = 30                                          # seconds between polls
currency_per_mc = 1000                               # a PRICE of 1.0 per kWh = 100000 mc/kWh (EUR)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.errors import CoordinatorError


class OpenAdrConfigError(CoordinatorError):
    """The ``[openadr]`` section has a bad value; the message names the key."""


@dataclass(frozen=True)
class OpenAdrConfig:
    vtn: str
    client_id: str
    client_secret: str
    ven_name: str
    program: str | None = None
    poll_s: float = 30.0


def parse(t: object, base: Path) -> OpenAdrConfig:
    if not isinstance(t, dict):
        raise OpenAdrConfigError(f"[openadr] must be a table, got {t!r}")
    known = ("vtn", "client_id", "client_secret", "client_secret_file", "ven_name", "program", "poll_s")
    for k in t:
        if k not in known:
            raise OpenAdrConfigError(f"openadr.{k} is not a key of [openadr] (known: {', '.join(known)})")

    def text(key: str, default: str | None = None) -> str:
        v: Any = t.get(key, default)
        if not isinstance(v, str) or not v:
            raise OpenAdrConfigError(f"openadr.{key} must be a non-empty string, got {v!r}")
        return v

    vtn = text("vtn").rstrip("/")
    if not vtn.startswith(("http://", "https://")):
        raise OpenAdrConfigError(f"openadr.vtn must be an http(s) URL, got {vtn!r}")
    if "client_secret_file" in t:
        f = base / text("client_secret_file")
        try:
            secret = f.read_text().strip()
        except OSError as e:
            raise OpenAdrConfigError(f"openadr.client_secret_file: cannot read {f}: {e.strerror}") from None
    else:
        secret = text("client_secret")
    poll = t.get("poll_s", 30)
    if type(poll) not in (int, float) or not 1 <= poll <= 3600:
        raise OpenAdrConfigError(f"openadr.poll_s must be 1..3600 seconds, got {poll!r}")
    program = t.get("program")
    if program is not None and not isinstance(program, str):
        raise OpenAdrConfigError(f"openadr.program must be a string, got {program!r}")
    client_id = text("client_id")
    return OpenAdrConfig(vtn, client_id, secret, text("ven_name", client_id), program, float(poll))
