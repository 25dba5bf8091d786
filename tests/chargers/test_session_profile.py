"""A car plugged in mid-interval gets its TxProfile when its session starts, not the wallbox's
TxDefaultProfile current until the next interval; the end of the session sends the default again;
otherwise one profile per interval."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ocpp.v16 import call as call16

from coordinator.chargers.service import bind
from coordinator.ledger.queries import chargers as q
from tests.chargers.chargepoint import PASSWORD, open16
from tests.chargers.test_ocpp import T0, Clock, community, order, service, started


def test_a_session_started_mid_interval_gets_its_profile_at_once(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)
    order(led, "b-alice", T0, ev_ma=10_000)
    clock = Clock(T0 + 5)

    async def main() -> list[dict[str, Any]]:
        svc = service(led, clock)
        await started(svc)
        try:
            cp, ws, task = await open16(svc.central.port, "CP1")
            await svc.tick()
            await svc.tick()  # once per interval
            assert len(cp.box.profiles) == 1
            clock.t = T0 + 400
            r = await cp.call(
                call16.StartTransaction(
                    connector_id=1, id_tag="car", meter_start=100, timestamp="2025-06-15T12:06:40Z"
                )
            )
            await svc.tick()  # the session's profile now, in the same interval
            await svc.tick()
            assert len(cp.box.profiles) == 2
            clock.t = T0 + 500
            await cp.call(
                call16.StopTransaction(
                    meter_stop=900, timestamp="2025-06-15T12:08:20Z", transaction_id=r.transaction_id
                )
            )
            await svc.tick()
            await ws.close()
            task.cancel()
            return cp.box.profiles
        finally:
            await svc.central.close()

    profiles = asyncio.run(main())
    assert [p["charging_profile_purpose"] for p in profiles] == [
        "TxDefaultProfile",
        "TxProfile",
        "TxDefaultProfile",
    ]
    assert profiles[1]["transaction_id"] == 1
    assert all(p["charging_schedule"]["charging_schedule_period"][0]["limit"] == 10.0 for p in profiles)
    assert [p[1:] for p in q.profiles(led, "CP1")] == [(10_000, "TxDefaultProfile", "Accepted")]
