"""A battery with a flexibility order in the storage market: before the order's baseline it keeps
the energy the order needs (it does not sell it to its neighbours), during the baseline it holds
still, and during the order it delivers the ordered power alone, whatever the market would want."""

from __future__ import annotations

import asyncio
from pathlib import Path

from coordinator.delivery.dispatch import Dispatch
from coordinator.delivery.flexibility import (
    BASELINE_INTERVALS,
    FlexOffer,
    FlexRequest,
    clear_flex,
    record_orders,
)
from coordinator.ledger import Ledger
from coordinator.market import Tariff
from coordinator.members import MemberPrefs
from coordinator.site import Site
from coordinator.transaction.settlement import settle
from protocol import crypto, frame, messages
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_750_000_000 - 1_750_000_000 % 900
TARIFF = Tariff(4_000, 20_750, 6_000, 3_000)
COORD = crypto.SigningKey(bytes(range(32)))
SITE = Site("g1", 900, TARIFF)
BATTERY = {"capacity_mwh": 10_000_000, "max_charge_w": 3_000, "max_discharge_w": 3_000, "min_soc": 100}
REQ = FlexRequest("r1", "f1", START + 12 * 900, 4, "reduce", 3_000, 30_000)  # 3 h ahead, for 1 h


def bat_w(led: Ledger, start: int) -> int | None:
    async def publish(topic: str, payload: bytes) -> None:
        pass

    sps = asyncio.run(Dispatch(led, SITE, COORD, publish).run(start))
    got = {sp.board_id: messages.decode(bytes(frame.split(sp.frame)[0])) for sp in sps}
    o = got.get("m-bat")
    return o.bat_w if isinstance(o, messages.Order) else None


def ledger(tmp: Path, with_order: bool) -> tuple[Ledger, VirtualBoard, VirtualBoard]:
    """A battery 40 % full (4 kWh, reserve 1 kWh) beside a neighbour drawing 3 kW: the market
    would have the battery discharge into the neighbour's deficit."""
    led = Ledger.open(tmp / "l.db")
    led.add_member(
        "bat",
        "Battery",
        "prosumer",
        now=START,
        feeder="f1",
        prefs=MemberPrefs.parse("bat", {"storage": BATTERY}),
    )
    led.add_member("load", "Load", "consumer", now=START, feeder="f1")
    bat = VirtualBoard("g1", "m-bat", bytes([1]) * 32, lambda t: 0, bat_soc=400, bat_p=0)
    load = VirtualBoard("g1", "m-load", bytes([2]) * 32, lambda t: 3_000)
    for b, m in ((bat, "bat"), (load, "load")):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
    store(led, [bat, load], range(START, START + 901, 300))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)
    if with_order:
        offer = FlexOffer("o-bat", "r1", "bat", "m-bat", 3_000, 12_000, 0, "battery")
        record_orders(led, REQ, clear_flex(REQ, [offer]))
    return led, bat, load


def test_without_an_order_the_battery_sells_into_the_deficit(tmp_path: Path) -> None:
    led, _, _ = ledger(tmp_path, with_order=False)
    assert bat_w(led, START + 900) == -3_000
    led.close()


def test_the_battery_keeps_what_its_order_needs(tmp_path: Path) -> None:
    # 3 kWh for the order above its 1 kWh reserve: of its 4 kWh it sells nothing
    led, bat, load = ledger(tmp_path, with_order=True)
    assert bat_w(led, START + 900) == 0
    led.close()


def test_the_battery_holds_still_in_the_baseline_and_delivers_the_order_alone(tmp_path: Path) -> None:
    # the neighbour's deficit is forecast every interval (the interval before is settled): the
    # market would trade the battery in both
    led, bat, load = ledger(tmp_path, with_order=True)
    base = REQ.start - BASELINE_INTERVALS * 900
    bat.bat_soc = 700  # charged meanwhile: 6 kWh above its reserve, plenty to sell
    store(led, [bat, load], range(START + 1200, REQ.start + 1, 300))
    for t in range(START + 900, base, 900):
        settle(led, t, 900, "pairwise", TARIFF, {}, now=t + 960)
    assert bat_w(led, base) == 0  # the baseline: still
    for t in range(base, REQ.start, 900):
        settle(led, t, 900, "pairwise", TARIFF, {}, now=t + 960)
    assert bat_w(led, REQ.start) == -3_000  # the order's 3 kW, no more: the market left it alone
    sched = "SELECT count(*) FROM schedules WHERE interval>=? AND (buyer='bat' OR seller='bat')"
    assert led._conn.execute(sched, (base,)).fetchone() == (0,)
    led.close()
