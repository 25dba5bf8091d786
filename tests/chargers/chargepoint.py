"""A wallbox for the tests: the ``ocpp`` package's own ChargePoint client (OCPP 1.6J or 2.0.1) over
a real WebSocket, answering SetChargingProfile (accepting, or refusing when told to) and keeping
the profiles it got; ``car`` charges at the profile's current limit."""

from __future__ import annotations

import asyncio
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


async def open16(port: int, cid: str) -> tuple[Client16, ClientConnection, asyncio.Task[None]]:
    ws = await connect(f"ws://127.0.0.1:{port}/ocpp/{cid}", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    cp = Client16(cid, ws)
    cp.box = Wallbox()
    task = asyncio.create_task(cp.start())
    await cp.call(call16.BootNotification(charge_point_model="Test", charge_point_vendor="peergrid"))
    return cp, ws, task


async def open201(port: int, cid: str) -> tuple[Client201, ClientConnection, asyncio.Task[None]]:
    ws = await connect(f"ws://127.0.0.1:{port}/{cid}", subprotocols=["ocpp2.0.1"])  # type: ignore[list-item]
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
