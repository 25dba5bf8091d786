"""The OCPP chargers' routes on a real server socket: an operator reads every charger (state,
password set and when but never its hash, open session, newest profile, cross-checks), binds one
with a password returned once, rotates it, unbinds it; a member's token may do none of it; bad
input is refused with the reason named, counted and logged, and nothing is stored."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator.chargers.auth import verify_password
from coordinator.chargers.service import bind
from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q
from coordinator.transaction.audit.bundle import Charges
from coordinator.web import auth
from coordinator.web.api import Site
from coordinator.web.server import app
from tests.audit.community import TARIFF
from tests.chargers.chargepoint import PASSWORD

T = 1_750_000_500 - 1_750_000_500 % 900  # an interval start


def ledger(tmp_path: Path) -> Ledger:
    led = Ledger.open(tmp_path / "ledger.db")
    for m in ("alice", "bob"):
        led.add_member(m, m, "prosumer", now=T - 86_400, feeder="f1")
    return led


def reported(led: Ledger) -> None:
    """CP1: alice's, online, a session running, a profile answered, two checks of three disagreeing."""
    bind(led, "CP1", "alice", T - 3600, PASSWORD)
    q.booted(led, "CP1", "ocpp1.6", "peergrid", "Test", T - 3000)
    q.set_state(led, "CP1", q.ONLINE, None, T + 100)
    q.start_session(led, "CP1", 1, "tag", T - 600, 10_000)
    q.add_meter(led, "CP1", T - 600, 10_000, 0, None, 1)
    q.add_meter(led, "CP1", T + 90, 12_345, 7_400, 550, 1)
    q.add_profile(led, "CP1", T - 900, 10_000, "TxDefaultProfile", "Accepted", T - 880)
    q.add_profile(led, "CP1", T, 16_000, "TxProfile", "Rejected", T + 20)
    q.add_check(led, T - 2700, "CP1", 1_000_000, 1_000_000, True)
    q.add_check(led, T - 1800, "CP1", 2_000_000, 1_000_000, False)
    q.add_check(led, T - 900, "CP1", 3_000_000, 1_000_000, False)
    bind(led, "CP0", "bob", T - 7200)  # no password: refused until one is set


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_operator_reads_every_charger_and_a_member_none(tmp_path: Path) -> None:
    led = ledger(tmp_path)
    reported(led)
    op, alice = h(auth.issue(led, None, now=T)), h(auth.issue(led, "alice", now=T))
    site = Site(led, "g1", Charges(TARIFF), None, live=True)

    async def body() -> None:
        async with TestClient(TestServer(app(site))) as c:
            r = await c.get("/api/chargers", headers=op)
            assert r.status == 200
            text = await r.text()
            assert "scrypt" not in text and PASSWORD not in text  # never the hash nor the password
            cp0, cp1 = await r.json()
            assert cp1 == {
                "id": "CP1",
                "member": "alice",
                "bound_at": T - 3600,
                "state": "online",
                "reason": None,
                "last_seen": T + 100,
                "protocol": "ocpp1.6",
                "vendor": "peergrid",
                "model": "Test",
                "has_password": True,
                "password_set": T - 3600,
                "session": {"tx_id": 1, "start": T - 600, "meter_start_wh": 10_000, "energy_wh": 2_345},
                "profile": {
                    "interval": T,
                    "limit_ma": 16_000,
                    "kind": "TxProfile",
                    "status": "Rejected",
                    "sent": T + 20,
                },
                "checks": [
                    {"interval": T - 2700, "charger_mwh": 1_000_000, "board_mwh": 1_000_000, "agreed": True},
                    {"interval": T - 1800, "charger_mwh": 2_000_000, "board_mwh": 1_000_000, "agreed": False},
                    {"interval": T - 900, "charger_mwh": 3_000_000, "board_mwh": 1_000_000, "agreed": False},
                ],
                "disagreements": 2,
            }
            assert (cp0["id"], cp0["member"], cp0["state"], cp0["has_password"], cp0["password_set"]) == (
                "CP0",
                "bob",
                "unseen",
                False,
                None,
            )
            assert (cp0["session"], cp0["profile"], cp0["checks"]) == (None, None, [])
            assert cp0["disagreements"] == 0
            r = await c.get("/api/chargers?member=bob", headers=op)
            assert [x["id"] for x in await r.json()] == ["CP0"]
            r = await c.get("/api/chargers", headers=alice)  # operators only, even its own charger
            assert r.status == 403 and "operator" in (await r.json())["error"]
            assert (await c.get("/api/chargers")).status == 401

    asyncio.run(body())
    assert site.refused == {"operator_only": 1, "no_token": 1}
    led.close()


def test_bind_rotate_unbind_over_http(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    led = ledger(tmp_path)
    op = h(auth.issue(led, None, now=T))
    site = Site(led, "g1", Charges(TARIFF), None, live=True)
    caplog.set_level(logging.INFO, "peergrid.web")
    out: dict[str, Any] = {}

    async def body() -> None:
        async with TestClient(TestServer(app(site))) as c:
            t0 = int(time.time())
            r = await c.put("/api/chargers/CP1", json={"member": "alice"}, headers=op)
            assert r.status == 201
            a = await r.json()
            assert (a["id"], a["member"], a["previous_member"]) == ("CP1", "alice", None) and a["generated"]
            assert len(a["password"]) == 32 and t0 <= a["password_set"] == a["bound_at"] <= time.time()
            stored = q.password_hash(led, "CP1")
            assert stored is not None and verify_password(a["password"], stored)
            out["first"] = a["password"]
            # bound again to bob: moved, with a new password
            r = await c.put("/api/chargers/CP1", json={"member": "bob"}, headers=op)
            assert r.status == 200
            b = await r.json()
            assert (b["member"], b["previous_member"]) == ("bob", "alice") and b["password"] != a["password"]
            ch = q.charger(led, "CP1")
            assert ch is not None and ch.member_id == "bob"
            # a password chosen by the operator: checked, set, not echoed
            r = await c.put("/api/chargers/CP2", json={"member": "alice", "password": PASSWORD}, headers=op)
            assert r.status == 201 and (await r.json())["password"] is None
            stored = q.password_hash(led, "CP2")
            assert stored is not None and verify_password(PASSWORD, stored)
            # rotation: generated without a body, or the one given
            r = await c.post("/api/chargers/CP1/password", headers=op)
            assert r.status == 200
            rot = await r.json()
            assert rot["generated"] and len(rot["password"]) == 32 and rot["member"] == "bob"
            stored = q.password_hash(led, "CP1")
            assert stored is not None and verify_password(rot["password"], stored)
            assert not verify_password(b["password"], stored)
            r = await c.post("/api/chargers/CP1/password", json={"password": "x" * 40}, headers=op)
            assert r.status == 200 and (await r.json())["password"] is None
            stored = q.password_hash(led, "CP1")
            assert stored is not None and verify_password("x" * 40, stored)
            r = await c.post("/api/chargers/CP1/password", json={}, headers=op)
            assert r.status == 200 and (await r.json())["generated"] is True
            # unbind
            r = await c.delete("/api/chargers/CP2", headers=op)
            assert r.status == 200 and await r.json() == {"id": "CP2", "member": "alice", "unbound": True}
            assert q.charger(led, "CP2") is None
            listed = await (await c.get("/api/chargers", headers=op)).json()
            assert [x["id"] for x in listed] == ["CP1"]

    asyncio.run(body())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "charger CP1 bound to bob by api:operator (was: alice)" in logged
    assert "charger CP2 unbound from alice by api:operator" in logged
    assert out["first"] not in logged and PASSWORD not in logged  # passwords are never logged
    assert site.refused == {}
    led.close()


def test_bad_input_is_refused_with_the_reason_and_nothing_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    led = ledger(tmp_path)
    bind(led, "CP1", "alice", T, PASSWORD)
    before = q.password_hash(led, "CP1")
    op, alice = h(auth.issue(led, None, now=T)), h(auth.issue(led, "alice", now=T))
    site = Site(led, "g1", Charges(TARIFF), None, live=True)
    caplog.set_level(logging.WARNING, "peergrid.web")
    seen: list[tuple[str, int, str]] = []

    async def body() -> None:
        async with TestClient(TestServer(app(site))) as c:

            async def call(method: str, path: str, headers: dict[str, str] = op, **kw: Any) -> None:
                r = await c.request(method, path, headers=headers, **kw)
                seen.append((f"{method} {path}", r.status, (await r.json())["error"]))

            # a member's token may not write, not even for its own charger
            await call("PUT", "/api/chargers/CP1", alice, json={"member": "alice"})
            await call("POST", "/api/chargers/CP1/password", alice)
            await call("DELETE", "/api/chargers/CP1", alice)
            # bad ids
            await call("PUT", "/api/chargers/bad%20id", json={"member": "alice"})
            await call("PUT", "/api/chargers/" + "C" * 49, json={"member": "alice"})
            await call("POST", "/api/chargers/%3Cscript%3E/password")
            await call("DELETE", "/api/chargers/bad%20id")
            # bodies
            await call("PUT", "/api/chargers/CP2", json={"member": "zed"})
            await call("PUT", "/api/chargers/CP2", data=b"{not json")
            await call("PUT", "/api/chargers/CP2")
            await call("PUT", "/api/chargers/CP2", json=["alice"])
            await call("PUT", "/api/chargers/CP2", json={"member": 7})
            await call("PUT", "/api/chargers/CP2", json={"password": PASSWORD})
            await call("PUT", "/api/chargers/CP2", json={"member": "alice", "colour": "red"})
            await call("PUT", "/api/chargers/CP2", data=b"x" * 5000)
            await call("PUT", "/api/chargers/CP2", json={"member": "alice", "password": "short"})
            await call("POST", "/api/chargers/CP1/password", json={"password": "x" * 41})
            await call("POST", "/api/chargers/CP1/password", json={"password": "with spaces in it, 24 ch"})
            await call("POST", "/api/chargers/CP1/password", json={"password": "é" * 20})
            await call("POST", "/api/chargers/CP1/password", json={"password": 1234567890123456})
            await call("POST", "/api/chargers/CP1/password", data=b'{"password": "\xc3("}')
            await call("POST", "/api/chargers/CP1/password", data=b"{" * 2000)
            # not bound
            await call("POST", "/api/chargers/CP9/password")
            await call("DELETE", "/api/chargers/CP9")
            r = await c.get("/api/chargers", headers=op)  # still serving
            assert r.status == 200 and [x["id"] for x in await r.json()] == ["CP1"]

    asyncio.run(body())
    ids = "must be 1-48 of [A-Za-z0-9_.:-]"
    pw = "password: a charger password must be"
    obj = '{"member": "<member id>"} (optionally "password")'
    not_json = "the body is not JSON:"
    put, post = "PUT /api/chargers/CP2", "POST /api/chargers/CP1/password"
    expected = [
        ("PUT /api/chargers/CP1", 403, "only an operator's token binds chargers"),
        ("POST /api/chargers/CP1/password", 403, "only an operator's token sets chargers' passwords"),
        ("DELETE /api/chargers/CP1", 403, "only an operator's token unbinds chargers"),
        ("PUT /api/chargers/bad%20id", 400, f"charger id 'bad id' {ids}"),
        ("PUT /api/chargers/" + "C" * 49, 400, f"charger id '{'C' * 49}' {ids}"),
        ("POST /api/chargers/%3Cscript%3E/password", 400, f"charger id '<script>' {ids}"),
        ("DELETE /api/chargers/bad%20id", 400, f"charger id 'bad id' {ids}"),
        (put, 400, "no member 'zed'"),
        (put, 400, f"{not_json} Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (put, 400, f"{not_json} Expecting value: line 1 column 1 (char 0)"),
        (put, 400, f"expected a JSON object {obj}"),
        (put, 400, "member must be a string"),
        (put, 400, f"member is missing: expected {obj}"),
        (put, 400, "unknown key 'colour' (expected member, password)"),
        (put, 413, "the body is larger than 1024 bytes"),
        (put, 400, f"{pw} 16..40 characters, got 5"),
        (post, 400, f"{pw} 16..40 characters, got 41"),
        (post, 400, f"{pw} printable ASCII without spaces"),
        (post, 400, f"{pw} printable ASCII without spaces"),
        (post, 400, "password must be a string"),
        (
            post,
            400,
            f"{not_json} 'utf-8' codec can't decode byte 0xc3 in position 14: invalid continuation byte",
        ),
        (post, 413, "the body is larger than 1024 bytes"),
        ("POST /api/chargers/CP9/password", 404, "charger 'CP9' is not bound"),
        ("DELETE /api/chargers/CP9", 404, "charger 'CP9' is not bound"),
    ]
    assert seen == expected
    assert site.refused == {"operator_only": 3, "bad_charger": len(expected) - 3}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(expected) and "refused (400 bad_charger): no member 'zed'" in warnings[7]
    # nothing stored: CP1 as it was, no CP2
    assert q.password_hash(led, "CP1") == before and [c.charger_id for c in q.chargers(led)] == ["CP1"]
    led.close()
