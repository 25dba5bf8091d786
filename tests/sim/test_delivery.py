"""The delivery loop closed in the simulator. On a congested grid (flex_feeder's overhead feeder f2
around noon, every roof exporting: the voltage at its far end rises past 1.05 pu) the coordinator's
dispatch runs the delivery check, stores its redispatches and grid checks, sends them in the boards'
signed orders, and the virtual boards apply them: the limited boards export less, and the metered
flows break fewer limits than in the same run with the check off. Then a virtual board's actuators
one by one: the PV export limit and the EV charging current of an order."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
from pathlib import Path

import pytest

from protocol import crypto, frame, messages, topics
from sim import brokers, metrics, report, scenario
from sim.faults import Link
from sim.fleet import VirtualFleet
from sim.profiles import STEP_S, HomePhysics
from sim.run import RunResult, run

HOURS, FROM_H = 2, 10.5  # 10:30-12:30 UTC on the scenario's November day: eight intervals


def simulate(tmp: Path, check: bool) -> RunResult:
    sc = scenario.load("flex_feeder").shorter(HOURS, from_h=FROM_H)
    assert sc.delivery_check  # the scenario has a grid: the check is on unless turned off
    sc = dataclasses.replace(sc, delivery_check=check)

    async def main() -> RunResult:
        return await run(sc, brokers.Mosquitto(tmp), tmp)

    return asyncio.run(asyncio.wait_for(main(), 120))


def coordinator_key(sc: scenario.Scenario) -> bytes:
    """The run's coordinator key (sim/run.py derives it from the scenario's seed)."""
    return crypto.SigningKey(random.Random(f"{sc.seed}/coordinator").randbytes(32)).public


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[RunResult, Path]]:
    out = {}
    for check in (False, True):
        tmp = tmp_path_factory.mktemp(f"check_{check}")
        out[check] = (simulate(tmp, check), tmp)
    return out


def test_redispatches_are_stored_sent_applied_and_relieve_the_grid(
    runs: dict[bool, tuple[RunResult, Path]],
) -> None:
    (off, _), (on, workdir) = runs[False], runs[True]
    sc = on.scenario
    length = sc.market.interval_s
    for r in (on, off):
        assert r.invariants.ok, "\n".join(r.invariants.lines())
        assert sum(b.total for b in r.bills) == 0
    assert off.delivery is None and on.delivery is not None
    d = on.delivery

    # stored: every interval with a settled one two before it was checked (its orders go out ahead,
    # before the previous one settles: the first two have no forecast); the changes with their reasons
    db = sqlite3.connect(workdir / "ledger.db")
    window = (sc.start, sc.end)
    rows = db.execute(
        "SELECT interval, board_id, kind, delta_w, setpoint, reason, compensation FROM redispatches "
        "WHERE interval >= ? AND interval < ?",
        window,
    ).fetchall()
    assert len(rows) == d.redispatches > 0
    assert {r[2] for r in rows} == {"pv_limit"}  # at noon only export limits help
    assert all(r[3] < 0 and r[4] >= 0 and r[5] and r[6] > 0 for r in rows)
    n, changes = db.execute(
        "SELECT count(*), sum(changes) FROM grid_checks WHERE interval >= ? AND interval < ?", window
    ).fetchone()
    assert n == d.intervals == HOURS * 3600 // length - 2 and changes == len(rows)
    assert d.before >= d.redispatched > 0 and d.after < d.before
    paid = db.execute("SELECT sum(amount) FROM postings WHERE account = 'redispatch_compensation'").fetchone()
    assert paid == (0,) and d.compensation == sum(r[6] for r in rows)

    # sent: each change is in its board's signed order for the interval
    homes = {h.board: h for h in sc.homes}
    verifier = crypto.Verifier(coordinator_key(sc))
    limited = 0
    less = 0
    for interval, board, _, _, setpoint, _, _ in rows:
        (fr,) = db.execute(
            "SELECT frame FROM board_orders WHERE board_id = ? AND interval = ?", (board, interval)
        ).fetchone()
        topic = topics.board_topic("sim", board, "order")
        order = frame.open_frame(topic, bytes(fr), lambda _m: verifier)
        assert isinstance(order, messages.Order)
        assert order.pv_limit_w == setpoint and (order.valid_from, order.valid_until) == (
            interval,
            interval + length,
        )
        # applied: the order went out ahead, so over the whole interval the board exports no more
        # than its limit, unless its PV is curtailed to nothing
        m = homes[board].member
        a = (interval - sc.start) // STEP_S
        for j in range(a, a + length // STEP_S):
            assert -on.power[m][j] <= setpoint or on.physics[m].pv_w[j + 1] == 0
        if not homes[board].battery_mwh:  # the same physics in both runs: only the limit differs
            steps = range(a, a + length // STEP_S)
            exp_on = sum(max(0, -on.power[m][j]) for j in steps)
            exp_off = sum(max(0, -off.power[m][j]) for j in steps)
            assert exp_on <= exp_off
            limited += exp_off
            less += exp_off - exp_on
    assert limited and less > limited // 10
    assert on.curtailed_mwh > 0 and off.curtailed_mwh == 0

    # the metered flows on the grid break fewer limits, and less, in the redispatched intervals
    assert [g.start for g in on.grid] == [g.start for g in off.grid]
    redispatched = {r[0] for r in rows}
    for g_on, g_off in zip(on.grid, off.grid, strict=True):
        if g_on.start in redispatched:
            assert g_on.v_max_pu < g_off.v_max_pu and g_on.violations <= g_off.violations
    assert sum(g.violations for g in on.grid) < sum(g.violations for g in off.grid)
    assert sum(g.violations > 0 for g in on.grid) < sum(g.violations > 0 for g in off.grid)

    # the report says so
    text = "\n".join(report.summary_lines(on, metrics.summarize(on)))
    beyond = sum(g.violations > 0 for g in on.grid)
    assert f"delivery  {d.redispatches} redispatches in {d.redispatched} intervals" in text
    assert (
        f"beyond limits: {d.before} forecast before redispatch, {d.after} after; {beyond} of 8 metered"
        in text
    )
    text = "\n".join(report.summary_lines(off, metrics.summarize(off)))
    assert "delivery  check off: " in text and "of 8 intervals beyond limits in the metered flows" in text


def test_a_virtual_board_applies_export_limit_and_ev_current() -> None:
    sc = scenario.parse(
        {"name": "one", "duration_h": 1, "group": [{"prefix": "h", "count": 1, "pv_kwp": 8, "ev_share": 1}]}
    )
    n = sc.duration_s // STEP_S + 1
    ev = tuple(11_000 if 5 <= k < 20 else 0 for k in range(n))
    ph = HomePhysics(tuple(500 + w for w in ev), (6_000,) * n, ev)
    key = crypto.SigningKey(bytes(32))
    fleet = VirtualFleet(sc, "sim", {"h": ph}, key.public, Link(sc.faults, sc.seed))
    (board,) = fleet.boards.values()
    topic = topics.board_topic("sim", board.board, "order")

    def order(oseq: int, until: int, ev_ma: int | None, pv_limit_w: int | None) -> None:
        msg = messages.Order(
            board=board.board, oseq=oseq, interval=sc.start, valid_from=sc.start, valid_until=until,
            bat_w=None, ev_ma=ev_ma, pv_limit_w=pv_limit_w, relay_mask=0, relay_state=0,
        )  # fmt: skip
        fleet._order(topic, frame.seal(msg, topic, key), crypto.Verifier(key.public), {board.board: "h"})

    async def steps(a: int, b: int) -> None:
        for k in range(a, b):
            await fleet.step(sc.start + k * STEP_S)

    # 8 A on three phases (5,520 W) and 1 kW export for ten minutes
    order(1, sc.start + 600, 8_000, 1_000)
    asyncio.run(steps(1, 31))
    p = fleet.power["h"]  # p[k - 1]: the step that ends at start + k steps
    assert p[:4] == [-1_000] * 4  # export capped: PV curtailed from 5.5 to 1 kW
    assert p[4:10] == [500 + 5_520 - 6_000] * 6  # the EV at the ordered current
    held = (11_000 - 5_520) * 6
    assert p[10:15] == [500 + 11_000 - 6_000] * 5  # the order expired: full power again
    catch_up = p[19:30]  # the series ends at step 20: what was held back is charged after
    assert sum(w - (500 - 6_000) for w in catch_up) == held and max(catch_up) == 500 + 11_000 - 6_000
    assert p[-1] == 500 - 6_000
    assert fleet.orders_applied == 1
    as_run = fleet.physics_as_run()["h"]
    assert sum(as_run.ev_w) == sum(ev) and as_run.pv_w[1:5] == (1_500,) * 4
    # below 6 A a charger does not charge (IEC 61851); an order without a current lifts the cap
    fleet.physics["h"] = HomePhysics((11_500,) * n, (0,) * n, (11_000,) * n)
    order(2, sc.start + 3_600, 3_000, None)
    asyncio.run(steps(31, 33))
    assert p[30:32] == [500, 500] and "h" not in fleet.pv_limits
    order(3, sc.start + 3_600, None, None)
    asyncio.run(steps(33, 35))
    assert p[32:34] == [11_500, 11_500] and fleet.evs["h"].owed_mws == 2 * 11_000 * STEP_S * 1000


def test_a_virtual_board_holds_an_early_order_until_its_interval_starts() -> None:
    """The coordinator sends an interval's order ahead of it: the board keeps the running order in
    force until the next interval starts, then applies the early one and acknowledges it then."""
    sc = scenario.parse(
        {
            "name": "one",
            "duration_h": 1,
            "market": {"interval_s": 900},
            "group": [{"prefix": "h", "count": 1, "battery_kwh": 10, "battery_kw": 5}],
        }
    )
    n = sc.duration_s // STEP_S + 1
    key = crypto.SigningKey(bytes(32))
    still = HomePhysics((0,) * n, (0,) * n, (0,) * n)
    fleet = VirtualFleet(sc, "sim", {"h": still}, key.public, Link(sc.faults, sc.seed))
    (board,) = fleet.boards.values()
    topic = topics.board_topic("sim", board.board, "order")
    nxt = sc.start + 900

    def order(oseq: int, start: int, bat_w: int) -> tuple[str, bytes] | None:
        msg = messages.Order(
            board=board.board, oseq=oseq, interval=start, valid_from=start, valid_until=start + 900,
            bat_w=bat_w, ev_ma=None, pv_limit_w=None, relay_mask=0, relay_state=0,
        )  # fmt: skip
        fr = frame.seal(msg, topic, key)
        return fleet._order(topic, fr, crypto.Verifier(key.public), {board.board: "h"})

    async def steps(a: int, b: int) -> None:
        for k in range(a, b):
            await fleet.step(sc.start + k * STEP_S)

    assert order(1, sc.start, 2_000) is not None  # the running interval's: applied and acknowledged
    asyncio.run(steps(1, 15))  # to 60 s before the next interval
    assert order(2, nxt, -1_000) is None  # early: held, acknowledged when it takes effect
    asyncio.run(steps(15, 17))
    w = fleet.battery_w["h"]  # w[k - 1]: the step that ends at start + k steps
    assert w[:15] == [2_000] * 15  # the running order stays in force up to the interval's end
    assert w[15:] == [-1_000]  # from the next interval's start: the early order
    assert fleet.orders_applied == 2 and fleet.pending["h"] == []
    (ack,) = fleet.acks
    a = frame.open_frame(ack[0], ack[1], lambda _m: crypto.Verifier(board.key.public))
    assert isinstance(a, messages.Ack) and (a.oseq, a.ts, a.bat_w) == (2, nxt, -1_000)
