"""Imbalance and redispatch at settlement: a dispatched battery pays imbalance for its battery's
deviation from its orders only (its household settles ex post like anyone's), a battery that did
what its orders said pays none, a redispatch is paid only when the board acknowledged applying it
as ordered, and a curtailed member's remaining export stays in the local market."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordinator.delivery.dispatch import Dispatch
from coordinator.ledger import Ledger
from coordinator.market import DSO, SUPPLIER, Tariff
from coordinator.members import MemberPrefs
from coordinator.site import Site
from coordinator.transaction.settlement import settle
from protocol import crypto, frame, messages, topics
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_750_000_000 - 1_750_000_000 % 900
TARIFF = Tariff(4_000, 20_750, 6_000, 3_000)
COORD = crypto.SigningKey(bytes(range(32)))
SITE = Site("g1", 900, TARIFF)
BATTERY = {"capacity_mwh": 10_000_000, "max_charge_w": 3_000, "max_discharge_w": 3_000}
S1 = START + 900  # the dispatched interval


def accounts(led: Ledger, party: str, interval: int = S1) -> dict[str, tuple[int, int]]:
    q = "SELECT account, sum(energy), sum(amount) FROM postings WHERE interval=? AND party=? GROUP BY account"
    return {a: (int(e), int(m)) for a, e, m in led._conn.execute(q, (interval, party))}


def battery_home(tmp: Path, home_w: Callable[[int], int]) -> tuple[Ledger, VirtualBoard, VirtualBoard]:
    """The sun exports 4 kW; the home has a 3 kW battery (and a household drawing ``home_w``). The
    first interval is settled and the second dispatched: the battery is to charge 3 kW (750 Wh) of
    the sun's forecast surplus."""
    led = Ledger.open(tmp / "l.db")
    led.add_member("sun", "Sun", "prosumer", now=START, feeder="f1")
    led.add_member(
        "home",
        "Home",
        "prosumer",
        now=START,
        feeder="f1",
        prefs=MemberPrefs.parse("home", {"storage": BATTERY}),
    )
    sun = VirtualBoard("g1", "m-sun", bytes([1]) * 32, lambda t: -4_000)
    home = VirtualBoard("g1", "m-home", bytes([2]) * 32, lambda t: home_w(t), bat_soc=400, bat_p=0)
    for b, m in ((sun, "sun"), (home, "home")):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
    store(led, [sun, home], range(START, START + 901, 300))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)

    async def publish(topic: str, payload: bytes) -> None:
        pass

    (sp,) = asyncio.run(Dispatch(led, SITE, COORD, publish).run(S1))
    assert sp.bat_w == 3_000
    return led, sun, home


def ack(
    led: Ledger, board: VirtualBoard, oseq: int, status: int, reason: str, ts: int, **applied: int
) -> None:
    a = messages.Ack(
        board=board.board, oseq=oseq, ts=ts, status=status, reason=reason, relay_state=0, **applied
    )
    assert led.record_ack(
        board.board, oseq, status, frame.seal(a, topics.board_topic("g1", board.board, "ack"), board.key)
    )


def test_a_battery_that_follows_its_orders_pays_no_imbalance_for_its_household(tmp_path: Path) -> None:
    # the battery charges the 3 kW it was told to; the household draws 1 kW besides: 250 Wh that
    # nobody scheduled. It is bought in the ex-post market like any member's deficit (here from the
    # sun's remaining 250 Wh), not from the supplier as imbalance at retail
    led, sun, home = battery_home(tmp_path, lambda t: 4_000 if t > S1 else 0)
    home.bat_p = 3_000
    store(led, [sun, home], range(S1 + 300, S1 + 901, 300))
    settle(led, S1, 900, "pairwise", TARIFF, {}, now=S1 + 960)
    got = accounts(led, "home")
    assert "energy_bought_imbalance" not in got and "energy_sold_imbalance" not in got
    local_e, local_nc = got["energy_bought_local"]
    assert local_e == 750_000 + 250_000  # the schedule, and the household's quarter hour ex post
    sun_local = accounts(led, "sun")["energy_sold_local"][0]
    assert sun_local == -1_000_000 and "energy_sold_supplier" not in accounts(led, "sun")
    total = led._conn.execute("SELECT sum(amount) FROM postings WHERE interval=?", (S1,)).fetchone()[0]
    assert total == 0 and local_nc < 0
    led.close()


def test_a_late_order_is_no_imbalance_the_time_before_it_took_effect(tmp_path: Path) -> None:
    # the order arrives a minute into the interval (one settlement delay): the battery is idle
    # until then, as its board acknowledged; no order set it in that minute, so the 50 Wh short
    # of the schedule is no imbalance: it settles ex post
    led, sun, home = battery_home(tmp_path, lambda t: 3_000 if t > S1 + 60 else 0)
    ack(led, home, 1, messages.ST_APPLIED, "", S1 + 60, bat_w=3_000)
    home.bat_p = 0
    store(led, [sun, home], [S1 + 60])
    home.bat_p = 3_000
    store(led, [sun, home], range(S1 + 120, S1 + 901, 60))
    settle(led, S1, 900, "pairwise", TARIFF, {}, now=S1 + 960)
    got = accounts(led, "home")
    assert "energy_bought_imbalance" not in got and "energy_sold_imbalance" not in got
    assert got["energy_bought_local"][0] == 750_000  # the schedule, whole
    assert got["energy_sold_supplier"][0] == -50_000  # the minute it stood still, ex post (at feed-in)
    led.close()


def test_a_battery_that_did_not_follow_pays_imbalance_for_its_deviation_only(tmp_path: Path) -> None:
    # the battery stayed idle all interval (it reports 0 W against the 3 kW ordered): 750 Wh short,
    # sold back to the supplier at feed-in; the household's 1 kW settles ex post all the same
    led, sun, home = battery_home(tmp_path, lambda t: 1_000 if t > S1 else 0)
    home.bat_p = 0
    store(led, [sun, home], range(S1 + 300, S1 + 901, 300))
    settle(led, S1, 900, "pairwise", TARIFF, {}, now=S1 + 960)
    got = accounts(led, "home")
    assert got["energy_sold_imbalance"] == (-750_000, 750_000 * TARIFF.feed_in)
    assert "energy_bought_imbalance" not in got
    sup = accounts(led, SUPPLIER)["energy_bought_imbalance"]
    assert sup == (750_000, -750_000 * TARIFF.feed_in)
    led.close()


def test_a_full_battery_told_to_charge_did_what_it_could(tmp_path: Path) -> None:
    led, sun, home = battery_home(tmp_path, lambda t: 3_000 if t <= S1 + 600 else 0)
    home.bat_p = 3_000
    store(led, [sun, home], [S1 + 300, S1 + 600])
    home.bat_p, home.bat_soc = 0, 1000  # full
    store(led, [sun, home], [S1 + 900])
    settle(led, S1, 900, "pairwise", TARIFF, {}, now=S1 + 960)
    assert not {"energy_sold_imbalance", "energy_bought_imbalance"} & set(accounts(led, "home"))
    led.close()


def curtailed(tmp: Path) -> tuple[Ledger, VirtualBoard]:
    """The sun exports (2 kW, once limited), its neighbour draws 3 kW; the delivery check limits the
    sun's export to 2 kW in interval S1 (owed 1.00), which goes out in the sun's signed order."""
    from coordinator.delivery.guard import Change, GridCheck
    from coordinator.delivery.summary import GridSummary

    led = Ledger.open(tmp / "l.db")
    led.add_member("sun", "Sun", "prosumer", now=START, feeder="f1")
    led.add_member("load", "Load", "consumer", now=START, feeder="f1")
    sun = VirtualBoard("g1", "m-sun", bytes([1]) * 32, lambda t: -2_000)
    load = VirtualBoard("g1", "m-load", bytes([2]) * 32, lambda t: 3_000)
    for b, m in ((sun, "sun"), (load, "load")):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
    store(led, [sun, load], range(START, START + 901, 300))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)

    def check(expected: dict[str, int], assets: dict[str, Any]) -> GridCheck:
        change = Change("m-sun", "pv_limit", -2_000, 2_000, "line:L1 120%", 10**9)
        return GridCheck([change], GridSummary(1.0, "b1", 1.06, "b2", 120.0, "L1", 20.0, "T1", 1, "screen"))

    async def publish(topic: str, payload: bytes) -> None:
        pass

    sps = asyncio.run(Dispatch(led, SITE, COORD, publish, check=check).run(S1))
    assert [sp.board_id for sp in sps] == ["m-sun"]
    store(led, [sun, load], range(S1 + 300, S1 + 901, 300))
    return led, sun


def test_a_redispatch_the_board_could_not_apply_is_not_paid(tmp_path: Path) -> None:
    led, sun = curtailed(tmp_path)
    ack(led, sun, 1, messages.ST_CLAMPED, "pv_limit_w limited to 0", S1 + 1, pv_limit_w=0)
    settle(led, S1, 900, "pairwise", TARIFF, {}, now=S1 + 960)
    assert "redispatch_compensation" not in accounts(led, "sun")
    assert "redispatch_compensation" not in accounts(led, DSO)
    led.close()


def test_a_redispatch_never_acknowledged_is_not_paid(tmp_path: Path) -> None:
    led, _ = curtailed(tmp_path)
    settle(led, S1, 900, "pairwise", TARIFF, {}, now=S1 + 960)
    assert "redispatch_compensation" not in accounts(led, "sun")
    led.close()


def test_an_applied_redispatch_is_paid_and_the_curtailed_export_stays_local(tmp_path: Path) -> None:
    led, sun = curtailed(tmp_path)
    ack(led, sun, 1, messages.ST_APPLIED, "", S1 + 1, pv_limit_w=2_000)
    settle(led, S1, 900, "pairwise", TARIFF, {}, now=S1 + 960)
    got = accounts(led, "sun")
    assert got["redispatch_compensation"] == (0, 10**9)
    assert accounts(led, DSO)["redispatch_compensation"] == (0, -(10**9))
    # the 500 Wh it could still export went to its neighbour at the local price, not to the supplier
    assert got["energy_sold_local"][0] == -500_000
    assert not {"energy_sold_imbalance", "energy_sold_supplier"} & set(got)
    load = accounts(led, "load")
    assert load["energy_bought_local"][0] == 500_000 and load["energy_bought_supplier"][0] == 250_000
    led.close()
