"""The dashboard's API on a real server socket: tokens, member isolation enforced by the server,
the OpenAPI document matching the routes, exports, disputes and audit bundles over HTTP."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator.ledger import Ledger
from coordinator.transaction.audit.bundle import Charges
from coordinator.transaction.audit.verify import verify_bundle
from coordinator.web import auth
from coordinator.web.api import Site
from coordinator.web.server import app
from tests.audit.community import FIXED_PER_DAY, GRID, TARIFF, Community, build

MEMBERS = ("alice", "bob", "carol", "dave")


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> Community:
    return build(tmp_path_factory.mktemp("web"))


def run(
    c: Community, body: Callable[[TestClient[Any, Any], dict[str, str], Ledger], Awaitable[None]]
) -> None:
    async def main() -> None:
        with Ledger.open(c.ledger) as led:
            tokens = {m: auth.issue(led, m, now=c.start) for m in MEMBERS}
            tokens["operator"] = auth.issue(led, None, now=c.start, label="ops")
            site = Site(led, GRID, Charges(TARIFF, FIXED_PER_DAY), c.key.public, live=False)
            async with TestClient(TestServer(app(site))) as client:
                await body(client, tokens, led)

    asyncio.run(main())


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_openapi_documents_exactly_the_server_routes(community: Community) -> None:
    async def body(client: TestClient[Any, Any], tokens: dict[str, str], led: Ledger) -> None:
        r = await client.get("/api/openapi.json")  # public: no token
        assert r.status == 200
        doc = await r.json()
        assert doc["openapi"].startswith("3.")
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        served = {
            (route.method, route.resource.canonical)
            for route in client.server.app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
        assert served == documented
        for p, ops in doc["paths"].items():  # every path parameter is declared
            for op in ops.values():
                names = {x["name"] for x in op["parameters"] if x["in"] == "path"}
                assert names == set(re.findall(r"\{(\w+)\}", p)), p

    run(community, body)


def test_tokens_are_required_and_stored_hashed(community: Community) -> None:
    async def body(client: TestClient[Any, Any], tokens: dict[str, str], led: Ledger) -> None:
        assert (await client.get("/api/me")).status == 401
        assert (await client.get("/api/me", headers=h("pg_not-a-token"))).status == 401
        r = await client.get("/api/me", headers=h(tokens["alice"]))
        assert await r.json() == {"role": "member", "member": "alice", "grid": GRID, "as_of": community.end}
        r = await client.get("/api/me", headers=h(tokens["operator"]))
        assert (await r.json())["role"] == "operator"
        stored = [row[0] for row in led._conn.execute("SELECT token_hash FROM access_tokens")]
        assert stored and not any(t in s or s in t for t in tokens.values() for s in stored)
        assert auth.revoke(led, tokens["dave"], now=community.end)
        assert (await client.get("/api/me", headers=h(tokens["dave"]))).status == 401
        page = await client.get("/")
        assert page.status == 200 and "charts.js" in await page.text()
        assert (await client.get("/static/app.js")).status == 200
        assert (await client.get("/static/..%2fapi.py")).status == 404

    run(community, body)


def test_a_member_reads_only_its_own_data(community: Community) -> None:
    async def body(client: TestClient[Any, Any], tokens: dict[str, str], led: Ledger) -> None:
        alice = h(tokens["alice"])
        for path in ("power", "bill", "audit", "disputes"):
            assert (await client.get(f"/api/members/bob/{path}", headers=alice)).status == 403, path
            assert (await client.get(f"/api/members/alice/{path}", headers=alice)).status == 200, path
        for path in ("power", "market", "trades", "grid", "boards", "disputes", "export/readings.csv"):
            r = await client.get(f"/api/{path}?member=bob", headers=alice)
            assert r.status == 403, path
        r = await client.post(
            "/api/members/bob/disputes", headers=alice, json={"interval": community.start, "reason": "x"}
        )
        assert r.status == 403
        # lists are limited to alice's records
        assert [m["id"] for m in await (await client.get("/api/members", headers=alice)).json()] == ["alice"]
        p = await (await client.get("/api/power", headers=alice)).json()
        assert list(p["members"]) == ["alice"] and len(p["t"]) > 10
        trades = await (await client.get("/api/trades", headers=alice)).json()
        assert trades and all("alice" in (t["buyer"], t["seller"]) for t in trades)
        market = await (await client.get("/api/market", headers=alice)).json()
        assert {b["party"] for b in market["bids"]} == {"alice"} and len(market["intervals"]) == 8
        grid = await (await client.get("/api/grid", headers=alice)).json()
        assert [b["board"] for b in grid["boards"]] == ["b-alice"] and len(grid["curtailments"]) == 1
        # bob's battery redispatch is not alice's; the grid-wide limits summary is everyone's
        assert grid["redispatches"] == [] and [c["trafo_max"] for c in grid["checks"]] == ["T1"]
        boards = await (await client.get("/api/boards", headers=alice)).json()
        assert [b["board"] for b in boards["boards"]] == ["b-alice"] and "rejections" not in boards
        csv_text = await (await client.get("/api/export/readings.csv?period=2025-11", headers=alice)).text()
        assert {row.split(",")[0] for row in csv_text.splitlines()[1:]} == {"alice"}
        # the community's aggregate is not a member's data: every member sees it
        g = await (await client.get("/api/microgrid", headers=alice)).json()
        assert len(g["t"]) > 10 and "members" not in g
        # bob's token cannot see alice's curtailment, the operator sees everything
        bob = h(tokens["bob"])
        gb = await (await client.get("/api/grid", headers=bob)).json()
        assert gb["curtailments"] == [] and [r["kind"] for r in gb["redispatches"]] == ["battery"]
        assert gb["redispatches"][0]["reason"].startswith("trafo:T1") and gb["checks"] == grid["checks"]
        op = h(tokens["operator"])
        assert len(await (await client.get("/api/members", headers=op)).json()) == 4
        p = await (await client.get("/api/power", headers=op)).json()
        assert sorted(p["members"]) == list(MEMBERS)
        assert (await (await client.get("/api/boards", headers=op)).json())["rejections"] == {
            "bad_signature": 2,
            "replay": 1,
        }
        r = await client.get("/api/market?member=carol", headers=op)
        assert {b["party"] for b in (await r.json())["bids"]} == {"carol"}

    run(community, body)


def test_bill_disputes_exports_and_audit_over_http(community: Community) -> None:
    async def body(client: TestClient[Any, Any], tokens: dict[str, str], led: Ledger) -> None:
        carol = h(tokens["carol"])
        bill = await (await client.get("/api/members/carol/bill?period=2025-11-20", headers=carol)).json()
        assert bill["total"] < 0 and bill["intervals"] == 8 and len(bill["running"]) == 8
        assert bill["running"][-1][1] == bill["total"] + FIXED_PER_DAY
        assert sum(x["cents"] for x in bill["lines"]) == bill["total_cents"]  # as the issued bill shows
        r = await client.post(
            "/api/members/carol/disputes",
            headers=carol,
            json={"interval": community.start + 900, "reason": "meter was being replaced"},
        )
        assert r.status == 201
        d = await r.json()
        assert d["evidence"]["spans"][0]["board"] == "b-carol" and d["evidence"]["result_frame"]
        for bad in ({"interval": "soon", "reason": "x"}, {"reason": "x"}, {"interval": 5, "reason": "x"}):
            r = await client.post("/api/members/carol/disputes", headers=carol, json=bad)
            assert r.status == 400, bad
        assert "not been settled" in (await r.json())["error"]
        listed = await (await client.get("/api/disputes", headers=carol)).json()
        assert [x["id"] for x in listed] == [d["id"]]
        r = await client.get("/api/export/bills.csv?period=2025-11-20", headers=carol)
        assert r.headers["Content-Type"].startswith("text/csv")
        assert {row.split(",")[0] for row in (await r.text()).splitlines()[1:]} == {"carol"}
        assert (await client.get("/api/export/secrets.csv", headers=carol)).status == 404
        assert (await client.get("/api/export/bills.csv?period=nope", headers=carol)).status == 400
        assert (await client.get("/api/power?hours=x", headers=carol)).status == 400
        b = await (await client.get("/api/members/carol/audit?period=2025-11-20", headers=carol)).json()
        rep = verify_bundle(b, community.key.public)
        assert rep.ok and rep.total == bill["total"]

    run(community, body)


def test_cli_tokens(community: Community, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from coordinator.cli import main

    assert main(["dashboard", "token", "--config", str(community.config), "--member", "bob"]) == 0
    token = capsys.readouterr().out.strip()
    with Ledger.open(community.ledger) as led:
        assert auth.identify(led, token) == auth.Principal("bob")
    assert main(["dashboard", "token", "--config", str(community.config), "--revoke", token]) == 0
    with Ledger.open(community.ledger) as led:
        assert auth.identify(led, token) is None
    assert main(["dashboard", "token", "--config", str(community.config), "--member", "zed"]) == 2
    assert "no member 'zed'" in capsys.readouterr().err


def test_refused_requests_are_counted(community: Community, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        with Ledger.open(community.ledger) as led:
            token = auth.issue(led, "bob", now=community.start)
            site = Site(led, GRID, Charges(TARIFF, FIXED_PER_DAY), None, live=False)
            async with TestClient(TestServer(app(site))) as client:
                assert (await client.get("/api/trades")).status == 401
                assert (await client.get("/api/members/alice/bill", headers=h(token))).status == 403
                assert (await client.get("/api/trades?limit=0", headers=h(token))).status == 400
                r = await client.get("/api/members/bob/audit", headers=h(token))
                assert r.status == 404 and "no coordinator key" in (await r.json())["error"]
                r = await client.post("/api/members/bob/disputes", headers=h(token), data=b"{")
                assert r.status == 400
                huge = {"interval": 10**30, "reason": "x"}  # was a 500 (OverflowError deep in the evidence)
                r = await client.post("/api/members/bob/disputes", headers=h(token), json=huge)
                assert r.status == 400 and "Unix seconds" in (await r.json())["error"]
                # a forged log line in the path stays inside one quoted, still-encoded field
                with caplog.at_level(logging.WARNING, logger="peergrid.web"):
                    forged = "/api/x%0a2025-01-01%2000:00:00,000%20INFO%20peergrid.web:%20forged"
                    assert (await client.get(forged)).status == 401
                assert all("\n" not in r.getMessage() for r in caplog.records)
                assert (await client.get("/api/me", headers=h(token))).status == 200  # still serving
            assert site.refused == {"no_token": 2, "other_member": 1, "bad_request": 1, "bad_dispute": 2}

    asyncio.run(main())


def test_the_dashboard_bill_carries_contract_subscriptions(community: Community) -> None:
    from coordinator.market import Contract

    sub = 90 * 10**9  # 90 cents per billing period
    contract = Contract(
        "c-dave", "dave", "bob", community.start, community.start + 86_400 * 365, markup=0, subscription=sub
    )

    async def main() -> None:
        with Ledger.open(community.ledger) as led:
            token = auth.issue(led, "dave", now=community.start)
            charges = Charges(TARIFF, FIXED_PER_DAY, contracts=(contract,))
            site = Site(led, GRID, charges, community.key.public, live=False)
            async with TestClient(TestServer(app(site))) as client:
                dave = h(token)
                bill = await (
                    await client.get("/api/members/dave/bill?period=2025-11-20", headers=dave)
                ).json()
                lines = {x["account"]: x for x in bill["lines"]}
                assert lines["contract_subscription"]["amount"] == -sub
                assert lines["contract_subscription"]["cents"] == -90
                assert sum(x["cents"] for x in bill["lines"]) == bill["total_cents"]
                r = await client.get("/api/export/bills.csv?period=2025-11-20", headers=dave)
                assert f"contract_subscription,0,{-sub},-90" in await r.text()
                b = await (await client.get("/api/members/dave/audit?period=2025-11-20", headers=dave)).json()
                rep = verify_bundle(b, community.key.public)
                assert rep.ok and rep.total == bill["total"]
                assert rep.lines["contract_subscription"] == (0, -sub)

    asyncio.run(main())


def test_the_dashboard_bill_of_a_local_day(community: Community) -> None:
    # a Swiss community: ?period=2025-11-20 is the Zurich day, 2025-11-19 23:00 to 2025-11-20
    # 23:00 UTC, and the default period the local month; exports and bundles use the same days
    import calendar

    from coordinator.transaction.audit.bundle import Charges

    zurich = "Europe/Zurich"

    def utc(y: int, mo: int, d: int, hh: int) -> int:
        return calendar.timegm((y, mo, d, hh, 0, 0, 0, 0, 0))

    async def main() -> None:
        with Ledger.open(community.ledger) as led:
            token = auth.issue(led, "carol", now=community.start)
            charges = Charges(TARIFF, FIXED_PER_DAY, timezone=zurich)
            site = Site(led, GRID, charges, community.key.public, live=False)
            async with TestClient(TestServer(app(site))) as client:
                carol = h(token)
                bill = await (
                    await client.get("/api/members/carol/bill?period=2025-11-20", headers=carol)
                ).json()
                assert (bill["start"], bill["end"]) == (utc(2025, 11, 19, 23), utc(2025, 11, 20, 23))
                assert (bill["from"], bill["to"], bill["timezone"]) == ("2025-11-20", "2025-11-21", zurich)
                assert bill["intervals"] == 8 and bill["days"] == 1
                lines = {x["account"]: x for x in bill["lines"]}
                assert lines["fixed"]["amount"] == -FIXED_PER_DAY
                month = await (await client.get("/api/members/carol/bill", headers=carol)).json()
                assert (month["start"], month["end"]) == (utc(2025, 10, 31, 23), utc(2025, 11, 30, 23))
                # carol joined on the 20th: fixed charges for the 20th to the 30th
                assert (month["from"], month["to"], month["days"]) == ("2025-11-01", "2025-12-01", 11)
                r = await client.get("/api/export/bills.csv?period=2025-11-20", headers=carol)
                rows = (await r.text()).splitlines()[1:]
                assert {tuple(x.split(",")[1:3]) for x in rows} == {
                    (str(utc(2025, 11, 19, 23)), str(utc(2025, 11, 20, 23)))
                }
                assert sum(int(x.split(",")[5]) for x in rows) == bill["total"]
                b = await (
                    await client.get("/api/members/carol/audit?period=2025-11-20", headers=carol)
                ).json()
                assert b["timezone"] == zurich and b["period"] == [bill["start"], bill["end"]]
                rep = verify_bundle(b, community.key.public)
                assert rep.ok and rep.total == bill["total"]

    asyncio.run(main())


def test_responses_carry_security_headers(community: Community) -> None:
    """The page may not be framed (a click on "flag" or an export from another site's frame) and
    runs only its own scripts; nothing is sniffed into another type; the API's answers (bills,
    readings, audit bundles of one member) are never kept by a browser or proxy cache."""

    async def body(client: TestClient[Any, Any], tokens: dict[str, str], led: Ledger) -> None:
        page = await client.get("/")
        csp = page.headers.get("Content-Security-Policy", "")
        directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";") if d.strip())
        assert directives.get("frame-ancestors") == "'none'", csp
        assert directives.get("default-src") == "'none'" and directives.get("script-src") == "'self'", csp
        assert "unsafe" not in csp
        assert page.headers.get("X-Frame-Options") == "DENY"
        carol = h(tokens["carol"])
        for path, hd in (
            ("/", {}),
            ("/static/app.js", {}),
            ("/api/openapi.json", {}),
            ("/api/members/carol/bill", carol),
            ("/api/export/readings.csv", carol),
            ("/api/members/bob/bill", carol),  # 403
            ("/api/me", {}),  # 401
        ):
            r = await client.get(path, headers=hd)
            assert r.headers.get("X-Content-Type-Options") == "nosniff", path
            assert r.headers.get("Referrer-Policy") == "no-referrer", path
            if path.startswith("/api/"):
                assert r.headers.get("Cache-Control") == "no-store", path
        r = await client.post("/api/members/carol/disputes", headers=carol, data=b"{")
        assert r.status == 400 and r.headers.get("Cache-Control") == "no-store"

    run(community, body)
