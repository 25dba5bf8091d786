"""A wallbox for the tests: the ``ocpp`` package's own ChargePoint client (OCPP 1.6J or 2.0.1) over
a real WebSocket with HTTP Basic authentication (OCPP security profile 1, or 2 over TLS), answering
SetChargingProfile (accepting, or refusing when told to) and keeping the profiles it got; ``car``
charges at the profile's current limit."""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as res16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as res201
from websockets.asyncio.client import ClientConnection, connect


@dataclass
class Wallbox:
    profiles: list[dict[str, Any]] = field(default_factory=list)
    accept: bool = True
    got: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, profile: dict[str, Any]) -> str:
        self.profiles.append(profile)
        self.got.set()
        return "Accepted" if self.accept else "Rejected"

    def limit_a(self) -> float:
        """The current limit (A) of the newest profile's first period."""
        p = self.profiles[-1]
        sched = p["charging_schedule"]
        if isinstance(sched, list):
            sched = sched[0]
        return float(sched["charging_schedule_period"][0]["limit"])


class Client16(Cp16):  # type: ignore[misc]
    box: Wallbox

    @on("SetChargingProfile")
    def set_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        return res16.SetChargingProfile(self.box.record(cs_charging_profiles))


class Client201(Cp201):  # type: ignore[misc]
    box: Wallbox

    @on("SetChargingProfile")
    def set_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        return res201.SetChargingProfile(self.box.record(charging_profile))


PASSWORD = "wallbox-password-0123456789"  # what the tests bind their chargers with


def basic(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP Basic authentication."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def dial(
    port: int,
    path: str,
    subprotocol: str,
    cid: str,
    password: str | None,
    authorization: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> ClientConnection:
    """A WebSocket to the central system: Basic credentials ``cid``:``password`` (none with
    ``password`` None), or the ``authorization`` header as given; over TLS with ``tls``."""
    if authorization is None and password is not None:
        authorization = basic(cid, password)
    headers = {} if authorization is None else {"Authorization": authorization}
    scheme = "ws" if tls is None else "wss"
    host = "127.0.0.1" if tls is None else "localhost"
    return await connect(
        f"{scheme}://{host}:{port}{path}",
        subprotocols=[subprotocol],  # type: ignore[list-item]
        additional_headers=headers,
        ssl=tls,
    )


async def open16(
    port: int,
    cid: str,
    password: str | None = PASSWORD,
    authorization: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[Client16, ClientConnection, asyncio.Task[None]]:
    ws = await dial(port, f"/ocpp/{cid}", "ocpp1.6", cid, password, authorization, tls)
    cp = Client16(cid, ws)
    cp.box = Wallbox()
    task = asyncio.create_task(cp.start())
    await cp.call(call16.BootNotification(charge_point_model="Test", charge_point_vendor="peergrid"))
    return cp, ws, task


async def open201(
    port: int, cid: str, password: str | None = PASSWORD
) -> tuple[Client201, ClientConnection, asyncio.Task[None]]:
    ws = await dial(port, f"/{cid}", "ocpp2.0.1", cid, password)
    cp = Client201(cid, ws)
    cp.box = Wallbox()
    task = asyncio.create_task(cp.start())
    await cp.call(
        call201.BootNotification(
            charging_station={"model": "Test", "vendor_name": "peergrid"}, reason="PowerUp"
        )
    )
    return cp, ws, task


def energy16(wh: float, soc: int | None = None, tx: int | None = None) -> call16.MeterValues:
    values: list[dict[str, Any]] = [
        {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    ]
    if soc is not None:
        values.append({"value": str(soc), "measurand": "SoC", "unit": "Percent"})
    return call16.MeterValues(
        connector_id=1,
        meter_value=[{"timestamp": "2025-06-15T12:00:00Z", "sampledValue": values}],
        transaction_id=tx,
    )
