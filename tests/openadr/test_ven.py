"""The coordinator's OpenADR 3 VEN against a VTN stand-in built from the OpenADR 3.0.1 OpenAPI
specification: events become flexibility requests and capacity limits, bad events and a VTN that
is down or answers garbage are counted and change nothing, delivered flexibility goes back as a
report the specification allows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coordinator.ledger import Ledger, flex_requests
from coordinator.openadr.config import OpenAdrConfig
from coordinator.openadr.errors import BadObject, VtnUnreachable
from coordinator.openadr.ven import Ven
from tests.openadr.vtn import Vtn

LEN = 900
OP = {"Authorization": "Bearer operator"}


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _event(
    program: str, start: int, resource: str, payloads: list[dict[str, Any]], n: int = 2
) -> dict[str, Any]:
    return {
        "programID": program,
        "eventName": "congestion",
        "targets": [{"type": "RESOURCE_NAME", "values": [resource]}],
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "DISPATCH_SETPOINT_RELATIVE",
                "units": "KW",
            },
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "PRICE",
                "units": "KWH",
                "currency": "EUR",
            },
        ],
        "intervalPeriod": {"start": _iso(start), "duration": "PT15M"},
        "intervals": [
            {
                "id": k,
                "intervalPeriod": {"start": _iso(start + k * LEN), "duration": "PT15M"},
                "payloads": payloads,
            }
            for k in range(n)
        ],
    }


def test_events_become_requests_and_limits_and_reports_go_back(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "ledger.db")
    now = int(time.time())
    for m, f in (("alice", "f1"), ("bob", "f2")):
        led.add_member(m, m, "prosumer", now=now - 86_400, feeder=f)
        led.add_board(
            f"b-{m}", "virtual", bytes([len(m)]) * 32, now=now - 86_400, member_id=m, status="active"
        )
    start = now - now % LEN + 4 * LEN

    async def body() -> None:
        vtn = Vtn()
        url = await vtn.start()
        ven = Ven(led, OpenAdrConfig(url, "ven-1", "secret-1", "peergrid-g1", "congestion", 1.0), "g1", LEN)
        try:
            async with aiohttp.ClientSession() as http:

                async def post(path: str, obj: dict[str, Any]) -> dict[str, Any]:
                    async with http.post(url + path, json=obj, headers=OP) as r:
                        assert r.status == 201, await r.text()
                        out: dict[str, Any] = await r.json()
                        return out

                prog = await post("/programs", {"programName": "congestion"})
                flex = [
                    {"type": "DISPATCH_SETPOINT_RELATIVE", "values": [2.5]},
                    {"type": "PRICE", "values": [0.3]},
                ]
                e1 = await post("/events", _event(prog["id"], start, "f1", flex))
                limit = _event(
                    prog["id"], start, "f2", [{"type": "IMPORT_CAPACITY_LIMIT", "values": [30]}], n=1
                )
                await post("/events", limit)
                await post("/events", _event(prog["id"], start, "f9", flex))  # no such resource
                await post("/events", _event(prog["id"], start + 60, "f1", flex))  # not an interval start
                await ven.poll(http)
                await ven.poll(http)  # the same events again: nothing twice
                (r,) = flex_requests.requests(led)
                assert (r.congestion_point, r.direction, r.power_w, r.start, r.intervals, r.price_cap) == (
                    "f1",
                    "reduce",
                    2_500,
                    start,
                    2,
                    30_000,
                )
                assert r.source == f"openadr:{e1['id']}"
                (lim,) = flex_requests.limits(led)
                assert (lim.resource, lim.direction, lim.limit_w, lim.start, lim.until) == (
                    "f2",
                    "import",
                    30_000,
                    start,
                    start + LEN,
                )
                assert ven.stats["unknown_resource"] == 1 and ven.stats["bad_event"] == 1
                assert led.rejections()["openadr_unknown_resource"] == 1
                # settled: reported back once, as the specification's report object
                with led.transaction() as tx:
                    flex_requests.set_state(tx, r.request_id, "settled", delivered=1_250_000, paid=0)
                await ven.poll(http)
                await ven.poll(http)
                (rep,) = vtn.store["reports"].values()
                assert rep["eventID"] == e1["id"] and rep["programID"] == prog["id"]
                assert rep["clientName"] == "peergrid-g1"
                payloads = {p["type"]: p["values"] for p in rep["resources"][0]["intervals"][0]["payloads"]}
                assert payloads["DELTA_USAGE"] == [1.25]
                assert vtn.invalid == []
                # garbage, then down: counted, nothing accepted changes
                vtn.garbage = True
                with pytest.raises(BadObject):
                    await ven.poll(http)
                vtn.garbage = False
                await vtn.stop()
                with pytest.raises(VtnUnreachable):
                    await ven.poll(http)
                assert [x.request_id for x in flex_requests.requests(led)] == [r.request_id]
        finally:
            await vtn.stop()

    asyncio.run(body())


def test_the_loop_counts_an_unreachable_vtn_and_keeps_running(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "ledger.db")
    ven = Ven(led, OpenAdrConfig("http://127.0.0.1:9", "a", "b", "v", None, 1.0), "g1", LEN)

    async def body() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ven.run(stop))
        while ven.stats["vtn_unreachable"] < 2:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(body())
    assert led.rejections()["openadr_vtn_unreachable"] >= 2
