"""A charger bound through the operator API (``PUT /api/chargers/{id}``) connects to the running
central system with the password the API returned; after a rotation through the API the central
system's binding check closes the old connection, the old password is refused and the new one
gets in; after ``DELETE`` the charger is refused as unknown.

The API's clock is the test's: the central system tells a changed password by when it was set
(seconds), so a bind and a rotation within one second would look alike to it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from ocpp.v16 import call as call16

from coordinator.ledger.queries import chargers as q
from coordinator.transaction.audit.bundle import Charges
from coordinator.web import auth
from coordinator.web import chargers as web_chargers
from coordinator.web.api import Site
from coordinator.web.server import app
from tests.audit.community import TARIFF
from tests.chargers.chargepoint import open16
from tests.chargers.test_auth import refused
from tests.chargers.test_ocpp import GRID, T0, Clock, community, service, started


def test_a_charger_bound_through_the_api_connects_with_the_returned_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_clock = Clock(T0 + 10)
    monkeypatch.setattr(web_chargers, "time", SimpleNamespace(time=api_clock))
    led = community(tmp_path)
    op = {"Authorization": f"Bearer {auth.issue(led, None, now=T0)}"}
    site = Site(led, GRID, Charges(TARIFF), None, live=True)

    async def main() -> None:
        svc = service(led, Clock(T0 + 5))
        await started(svc)
        port = svc.central.port
        try:
            async with TestClient(TestServer(app(site))) as http:
                assert await refused(port, "WB-1", password="not-bound-yet-0123456789") == 404
                r = await http.put("/api/chargers/WB-1", json={"member": "alice"}, headers=op)
                assert r.status == 201
                first = (await r.json())["password"]
                cp, ws, task = await open16(port, "WB-1", first)  # boots with it
                assert "WB-1" in svc.central.links
                assert (await cp.call(call16.Heartbeat())).current_time
                c = q.charger(led, "WB-1")
                assert c is not None and (c.member_id, c.protocol) == ("alice", "ocpp1.6")
                assert (c.bound_at, c.password_set) == (T0 + 10, T0 + 10)

                api_clock.t = T0 + 20
                r = await http.post("/api/chargers/WB-1/password", headers=op)
                assert r.status == 200
                second = (await r.json())["password"]
                assert second != first
                await svc.check_bindings()  # what the service's tick runs every 10 s
                await asyncio.wait_for(ws.wait_closed(), 10)
                assert (ws.close_code, ws.close_reason) == (1008, "password changed")
                task.cancel()
                assert await refused(port, "WB-1", password=first) == 401
                cp, ws, task = await open16(port, "WB-1", second)
                await cp.call(call16.Heartbeat())

                r = await http.delete("/api/chargers/WB-1", headers=op)
                assert r.status == 200
                await svc.check_bindings()
                await asyncio.wait_for(ws.wait_closed(), 10)
                assert (ws.close_code, ws.close_reason) == (1008, "unbound")
                task.cancel()
                assert await refused(port, "WB-1", password=second) == 404
        finally:
            await svc.central.close()

    asyncio.run(main())
    assert led.rejections()["ocpp_bad_password"] == 1
    led.close()
