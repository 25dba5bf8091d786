"""The peer-to-system routes on a real server socket: who may change what, and bad input refused
with the reason named and counted, nothing stored."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from coordinator.ledger import Ledger, flex_requests, member_changes
from coordinator.transaction.audit.bundle import Charges
from coordinator.web import auth
from coordinator.web.api import Site
from coordinator.web.server import app
from tests.audit.community import TARIFF


def test_devices_and_requests_over_http(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "ledger.db")
    now = int(time.time())
    for m in ("alice", "bob"):
        led.add_member(m, m, "prosumer", now=now - 86_400, feeder="f1")
        led.add_board(
            f"b-{m}", "virtual", bytes([len(m)]) * 32, now=now - 86_400, member_id=m, status="active"
        )
    op = {"Authorization": f"Bearer {auth.issue(led, None, now=now)}"}
    alice = {"Authorization": f"Bearer {auth.issue(led, 'alice', now=now)}"}
    site = Site(led, "g1", Charges(TARIFF), None, live=True, length=900)
    start = now - now % 900 + 2 * 900
    req = {
        "congestion_point": "f1",
        "direction": "reduce",
        "power_w": 2_000,
        "start": start,
        "intervals": 2,
        "price_cap": 30_000,
    }

    async def body() -> None:
        async with TestClient(TestServer(app(site))) as c:
            r = await c.put("/api/members/alice/devices", json={"pv": {"kwp": 5}}, headers=alice)
            assert r.status == 201 and (await r.json())["changed_by"] == "api:member:alice"
            r = await c.put("/api/members/bob/devices", json={"pv": {"kwp": 5}}, headers=alice)
            assert r.status == 403  # another member's
            r = await c.put("/api/members/zed/devices", json={"pv": {"kwp": 5}}, headers=op)
            assert r.status == 404
            r = await c.put("/api/members/bob/devices", data=b"{not json", headers=op)
            assert r.status == 400 and "not JSON" in (await r.json())["error"]
            r = await c.put("/api/members/bob/devices", data=b"x" * 70_000, headers=op)
            assert r.status == 413
            r = await c.put("/api/members/bob/devices", json={"pv": {"kwp": 0}}, headers=op)
            assert (await r.json())["error"] == "member 'bob' pv.kwp must be an integer > 0, got 0"
            r = await c.get("/api/members/alice/devices", headers=alice)
            assert (await r.json())["pending"]["prefs"] == {"pv": {"kwp": 5}}
            r = await c.post("/api/flex/requests", json=req, headers=alice)
            assert r.status == 403  # operators only
            r = await c.post("/api/flex/requests", json={**req, "direction": "sideways"}, headers=op)
            assert r.status == 400 and "direction must be" in (await r.json())["error"]
            r = await c.post("/api/flex/requests", json={**req, "id": "r1"}, headers=op)
            assert r.status == 201
            r = await c.post("/api/flex/requests", json={**req, "id": "r2"}, headers=op)
            assert r.status == 409
            r = await c.get("/api/flex/requests", headers=alice)
            assert [x["request_id"] for x in await r.json()] == ["r1"]
            lim = {
                "resource": "g1",
                "direction": "import",
                "limit_w": 40_000,
                "start": start,
                "until": start + 900,
            }
            r = await c.post("/api/flex/limits", json=lim, headers=op)
            assert r.status == 201
            r = await c.post("/api/flex/limits", json={**lim, "resource": "f7"}, headers=op)
            assert r.status == 400 and "resource 'f7'" in (await r.json())["error"]

    asyncio.run(body())
    assert site.refused["bad_devices"] == 4 and site.refused["bad_flex_request"] == 2
    assert len(member_changes.history(led)) == 1 and len(flex_requests.requests(led)) == 1
