"""Ex-ante dispatch: a battery is cleared against the other members' forecasts, its board gets a
signed order with the implied setpoint, and the board's signed acknowledgement is recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from coordinator.delivery.assets import Costs
from coordinator.delivery.dispatch import Dispatch, view
from coordinator.ledger import Ledger
from coordinator.market import Tariff
from coordinator.members import MemberPrefs
from coordinator.site import Site
from coordinator.transaction.ingest import Ingest
from coordinator.transaction.settlement import settle
from protocol import crypto, frame, messages, topics
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_750_000_000 - 1_750_000_000 % 900
TARIFF = Tariff(4_000, 20_750, 6_000, 3_000)
COORD = crypto.SigningKey(bytes(range(32)))
SITE = Site("g1", 900, TARIFF)


def prefs(member: str, data: dict[str, Any]) -> MemberPrefs:
    return MemberPrefs.parse(member, data)


def no_changes() -> Any:
    """What a stand-in grid check returns: no changes, a grid well within its limits."""
    from coordinator.delivery.guard import GridCheck
    from coordinator.delivery.summary import GridSummary

    return GridCheck([], GridSummary(1.0, "b1", 1.01, "b2", 10.0, "L1", 20.0, "T1", 0, "screen"))


def test_battery_gets_a_signed_setpoint_and_its_ack_is_recorded(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("sun", "Sun", "prosumer", now=START, feeder="f1")
    led.add_member(
        "bat",
        "Battery",
        "storage",
        now=START,
        feeder="f1",
        prefs=prefs(
            "bat",
            {
                "storage": {
                    "capacity_mwh": 10_000_000,
                    "max_charge_w": 3_000,
                    "max_discharge_w": 3_000,
                    "min_soc": 100,
                }
            },
        ),
    )
    sun = VirtualBoard("g1", "m-sun", bytes([1]) * 32, lambda t: -4_000)  # exports 4 kW
    bat = VirtualBoard("g1", "m-bat", bytes([2]) * 32, lambda t: 0, bat_soc=400)
    for b, m in ((sun, "sun"), (bat, "bat")):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
    store(led, [sun, bat], range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)  # the forecast: sun sold 1 kWh

    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append((topic, payload))

    d = Dispatch(led, SITE, COORD, publish)
    sps = asyncio.run(d.run(START + 900))
    assert [sp.board_id for sp in sps] == ["m-bat"] and len(sent) == 1
    topic, payload = sent[0]
    assert topic == topics.board_topic("g1", "m-bat", "order")
    order = frame.open_frame(topic, payload, lambda m: crypto.Verifier(COORD.public))
    assert isinstance(order, messages.Order)
    # the battery buys the sun's forecast surplus (1 kWh in 15 min = 4 kW), limited to 3 kW
    assert order.bat_w == 3_000 and order.oseq == 1
    assert (order.valid_from, order.valid_until) == (START + 900, START + 1800)
    # the board acknowledges (signed with its key); ingest records it against the order
    ack = messages.Ack(
        board="m-bat",
        oseq=1,
        ts=START + 901,
        status=messages.ST_APPLIED,
        reason="",
        bat_w=3_000,
        relay_state=0,
    )
    t_ack = topics.board_topic("g1", "m-bat", "ack")
    ack_frame = frame.seal(ack, t_ack, bat.key)
    ing = Ingest("g1", now=lambda: START + 902)
    ing.enrol("m-bat", bat.key.public)
    assert ing.handle(t_ack, ack_frame) == ack
    assert led.record_ack("m-bat", 1, ack.status, ack_frame)
    assert not led.record_ack("m-bat", 99, ack.status, ack_frame)  # never sent: refused
    row = led._conn.execute(
        "SELECT ack_status FROM board_orders WHERE board_id='m-bat' AND oseq=1"
    ).fetchone()
    assert row == (messages.ST_APPLIED,)
    assert led.next_oseq("m-bat") == 2
    led.close()


def test_schedule_binds_and_deviation_settles_at_last_resort(tmp_path: Path) -> None:
    """The battery was scheduled to charge 750 Wh from the sun at the ex-ante price; it charged
    only 500 Wh (its board reports 2 kW against the 3 kW ordered). The schedule settles at its
    price, the 250 Wh shortfall is sold back to the supplier at feed-in, the sun's extra export goes
    through the ex-post market; energy and money both balance."""
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("sun", "Sun", "prosumer", now=START, feeder="f1")
    led.add_member(
        "bat",
        "Battery",
        "storage",
        now=START,
        feeder="f1",
        prefs=prefs(
            "bat", {"storage": {"capacity_mwh": 10_000_000, "max_charge_w": 3_000, "max_discharge_w": 3_000}}
        ),
    )
    sun = VirtualBoard("g1", "m-sun", bytes([1]) * 32, lambda t: -4_000)
    bat = VirtualBoard("g1", "m-bat", bytes([2]) * 32, lambda t: 2_000 if t > START + 900 else 0, bat_soc=400)
    for b, m in ((sun, "sun"), (bat, "bat")):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")

    store(led, [sun, bat], range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)

    async def publish(topic: str, payload: bytes) -> None:
        pass

    sps = asyncio.run(Dispatch(led, SITE, COORD, publish).run(START + 900))
    assert sps[0].bat_w == 3_000
    sched = led._conn.execute("SELECT buyer, seller, energy, price FROM schedules").fetchall()
    assert [(b, s, e) for b, s, e, _ in sched] == [("bat", "sun", 750_000)]
    price = sched[0][3]
    bat.bat_p = 2_000  # what the battery reports it charges at
    store(led, [sun, bat], range(START + 960, START + 1801, 60))
    settle(led, START + 900, 900, "pairwise", TARIFF, {}, now=START + 1860)
    post = dict(
        led._conn.execute(
            "SELECT account, sum(amount) FROM postings WHERE interval=? AND party='bat' GROUP BY account",
            (START + 900,),
        ).fetchall()
    )
    assert post["energy_bought_local"] == -750_000 * price  # the schedule, at its ex-ante price
    d = led._conn.execute(
        "SELECT e_imp FROM deliveries WHERE interval=? AND party='bat'", (START + 900,)
    ).fetchone()
    shortfall = 750_000 - d[0]
    assert 0 < shortfall and post["energy_sold_imbalance"] == shortfall * TARIFF.feed_in
    assert led._conn.execute(
        "SELECT sum(amount) FROM postings WHERE interval=?", (START + 900,)
    ).fetchone() == (0,)
    # the sun: schedule + ex-post add up to what it exported
    e = dict(
        led._conn.execute(
            "SELECT account, sum(energy) FROM postings WHERE interval=? AND party='sun' GROUP BY account",
            (START + 900,),
        ).fetchall()
    )
    exported = led._conn.execute(
        "SELECT e_exp FROM deliveries WHERE interval=? AND party='sun'", (START + 900,)
    ).fetchone()[0]
    assert -sum(e.values()) == exported
    led.close()


def test_ev_charges_to_its_target_by_departure(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    led.add_member(
        "van",
        "Delivery van",
        "ev",
        now=START,
        feeder="f1",
        prefs=prefs(
            "van",
            {
                "storage": {
                    "kind": "ev",
                    "capacity_mwh": 60_000_000,
                    "max_charge_w": 11_000,
                    "phases": 3,
                    "target_soc": 800,
                    "departure": hhmm(START + 2700),
                }
            },
        ),
    )  # leaves in 45 minutes
    van = VirtualBoard("g1", "m-van", bytes([4]) * 32, lambda t: 0, bat_soc=400)
    led.add_board(van.board, "virtual", van.key.public, now=START, member_id="van", status="active")
    store(led, [van], [START])

    async def publish(topic: str, payload: bytes) -> None:
        pass

    (sp,) = asyncio.run(Dispatch(led, SITE, COORD, publish).run(START + 900))
    order = messages.decode(bytes(frame.split(sp.frame)[0]))
    assert isinstance(order, messages.Order)
    # 24 kWh missing, 2.75 kWh per interval at most: it must charge flat out, whatever the price
    assert order.bat_w is None and order.ev_ma == 11_000 * 1000 // (230 * 3)
    led.close()


STREET = Path(__file__).parents[1] / "delivery" / "street.toml"
HOME_W = 17_000


def hhmm(t: int) -> str:
    return "{:02d}:{:02d}".format(*divmod(t % 86_400 // 60, 60))


def street_ledger(path: Path) -> tuple[Ledger, list[VirtualBoard]]:
    """The street of tests/delivery/street.toml in the evening: three homes draw 16 kW each, one EV
    leaves in 45 minutes, one at breakfast, a heat pump runs on relay 1, and the community battery
    is nearly empty."""
    led = Ledger.open(path)
    boards = []
    for i in (1, 2, 3):
        led.add_member(f"home{i}", f"Home {i}", "consumer", now=START, feeder="f1")
        boards.append((f"home{i}", VirtualBoard("g1", f"house-{i}", bytes([10 + i]) * 32, lambda t: HOME_W)))
    ev = {"kind": "ev", "capacity_mwh": 60_000_000, "max_charge_w": 11_000, "phases": 3}
    ev |= {"target_soc": 800, "departure": hhmm(START + 2700)}  # the market's EV, leaving soon
    led.add_member("eva", "Van", "ev", now=START, feeder="f1", prefs=prefs("eva", {"storage": ev}))
    boards.append(("eva", VirtualBoard("g1", "ev-a", bytes([21]) * 32, lambda t: 0, bat_soc=400)))
    home_ev = {"max_charge_w": 11_000, "phases": 3, "need_mwh": 20_000_000}
    home_ev |= {"arrive": hhmm(START - 3600), "departure": hhmm(START + 12 * 3600)}
    home = prefs(
        "evb", {"integrator": {"horizon": 8}, "ev": home_ev}
    )  # an integrator home: its EV by the plan
    led.add_member("evb", "Home with EV", "consumer", now=START, feeder="f1", prefs=home)
    boards.append(("evb", VirtualBoard("g1", "ev-b", bytes([22]) * 32, lambda t: 0)))
    led.add_member(
        "heat",
        "Heat pump",
        "consumer",
        now=START,
        feeder="f1",
        prefs=prefs("heat", {"deferrable": {"w": 3_000, "relay": 1}}),
    )
    boards.append(("heat", VirtualBoard("g1", "hp", bytes([30]) * 32, lambda t: 3_000)))
    bat = {"capacity_mwh": 60_000_000, "max_charge_w": 30_000, "max_discharge_w": 30_000, "min_soc": 100}
    led.add_member(
        "comm", "Community battery", "storage", now=START, feeder="f1", prefs=prefs("comm", {"storage": bat})
    )
    boards.append(("comm", VirtualBoard("g1", "community", bytes([31]) * 32, lambda t: 0, bat_soc=117)))
    for m, b in boards:
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
    vbs = [b for _, b in boards]
    store(led, vbs, range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)
    return led, vbs


def test_run_redispatches_every_device_and_sends_one_order_per_board(tmp_path: Path) -> None:
    """The whole step on the street: the market's EV and battery setpoints would overload the
    transformer; the delivery check (in a worker thread) changes devices least cost first; each
    change is recorded with its reason and paid by the grid operator, and merged into the board's
    one signed order; what goes out holds in the AC power flow."""
    import threading

    from coordinator.delivery.guard import asset_check
    from coordinator.delivery.pilot import load_toml
    from coordinator.delivery.screen import Screen

    led, _ = street_ledger(tmp_path / "l.db")
    street = load_toml(STREET)
    scr = Screen(street)
    inner = asset_check(scr, street, length=900)
    seen: list[tuple[dict[str, int], int]] = []

    def check(expected: dict[str, int], assets: dict[str, Any]) -> Any:
        seen.append((dict(expected), threading.get_ident()))
        return inner(expected, assets)

    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append((topic, payload))

    d = Dispatch(led, SITE, COORD, publish, check=check)
    sps = asyncio.run(d.run(START + 900))
    ((expected, thread),) = seen
    assert thread != threading.get_ident()  # pandapower ran off the event loop's thread
    assert expected["ev-a"] == -11_000  # leaves in 45 minutes: charges flat out
    assert not scr.check_boards(expected).ok  # the plan alone would overload T1
    rows = led._conn.execute(
        "SELECT board_id, kind, delta_w, setpoint, reason, compensation FROM redispatches"
    )
    changes = {(r[0], r[1]): r[2:] for r in rows}
    assert changes and ("ev-a", "ev") not in changes
    assert {kind for _, kind in changes} == {"ev", "load"}  # the home's EV waits, the heat pump pauses
    costs = Costs(pv=TARIFF.feed_in)
    for (_, kind), (delta, _, reason, comp) in changes.items():
        assert "trafo:T1" in reason and comp == abs(delta) * 900 * 10 // 36 * costs.of(kind)
    fixed = {b: w + sum(v[0] for (bb, _), v in changes.items() if bb == b) for b, w in expected.items()}
    assert scr.check_boards(fixed).ok
    ac = scr.ac(street.bus_schedule(fixed))
    assert ac.trafo_loading.max() <= 100 and ac.vm_pu.min() >= 0.95
    orders = {}
    for topic, payload in sent:
        o = frame.open_frame(topic, payload, lambda m: crypto.Verifier(COORD.public))
        assert isinstance(o, messages.Order)
        orders[o.board] = o
    assert len(orders) == len(sent) == len(sps)  # one order per board
    for (board, kind), (_, setpoint, _, _) in changes.items():
        o = orders[board]
        if kind == "battery":
            assert o.bat_w == setpoint
        elif kind == "ev":
            assert o.ev_ma == setpoint
        elif kind == "load":
            assert o.relay_mask == 2 and o.relay_state == 0 and setpoint == 0
    assert orders["ev-a"].ev_ma == 11_000 * 1000 // 690
    # how close the interval runs to the limits is kept: T1 the most loaded, within its limit
    row = led._conn.execute(
        "SELECT trafo_max, trafo_max_pct, v_min_pu, violations, source, changes FROM grid_checks"
        " WHERE interval=?",
        (START + 900,),
    ).fetchone()
    assert row[0] == "T1" and 90 < row[1] <= 100 and row[2] >= 0.95
    # the fixed schedule is clear of the screen's margins, so no AC ran: the screen's values, within
    # its error of the AC power flow's
    assert row[3:] == (0, "screen", len(changes))
    assert abs(row[1] - float(ac.trafo_loading.max())) < scr.margin_loading_pp
    pay = led._conn.execute(
        "SELECT count(*) FROM postings WHERE account='redispatch_compensation'"
    ).fetchone()
    assert pay == (0,)  # paid at settlement, for what the boards acknowledge applying
    led.close()


def test_flex_request_gets_offers_orders_setpoints_and_payment(tmp_path: Path) -> None:
    """A grid operator's request to cut import on feeder f1: offers come from the members' devices,
    the cheapest clear, the delivering boards get setpoints in the request's intervals, and the
    readings prove delivery against the baseline, which is paid."""
    from coordinator.delivery.flexibility import FlexRequest, clear_flex, record_orders, settle_orders, verify

    led = Ledger.open(tmp_path / "l.db")
    bat = {"capacity_mwh": 20_000_000, "max_charge_w": 5_000, "max_discharge_w": 5_000, "min_soc": 100}
    led.add_member("ann", "Ann", "prosumer", now=START, feeder="f1", prefs=prefs("ann", {"storage": bat}))
    led.add_member(
        "bob",
        "Bob",
        "consumer",
        now=START,
        feeder="f1",
        prefs=prefs("bob", {"deferrable": {"w": 2_000, "relay": 0}, "flex": {"price": 9_000}}),
    )
    led.add_member(
        "cy", "Cy", "consumer", now=START, feeder="f2", prefs=prefs("cy", {"storage": bat})
    )  # elsewhere
    req = FlexRequest("r1", "f1", START + 5 * 900, 2, "reduce", 6_000, 20_000)
    order_w: dict[str, int] = {}

    def profile(base: int, board: str) -> Any:
        def p(t: int) -> int:
            active = req.start < t <= req.start + 2 * 900
            return base - order_w.get(board, 0) if active else base

        return p

    ann = VirtualBoard("g1", "m-ann", bytes([41]) * 32, profile(2_500, "m-ann"), bat_soc=700)
    bob = VirtualBoard("g1", "m-bob", bytes([42]) * 32, profile(2_500, "m-bob"))
    cy = VirtualBoard("g1", "m-cy", bytes([43]) * 32, lambda t: 1_000, bat_soc=700)
    for m, b in (("ann", ann), ("bob", bob), ("cy", cy)):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
    store(led, [ann, bob, cy], range(START, req.start + 1, 60))

    async def publish(topic: str, payload: bytes) -> None:
        pass

    d = Dispatch(led, SITE, COORD, publish)
    offers = d.flex_offers(req)
    assert [(o.board_id, o.asset, o.power_w, o.price) for o in offers] == [
        ("m-ann", "battery", 5_000, 1_000),  # its wear cost; 12 kWh above min_soc holds 5 kW easily
        ("m-bob", "load", 2_000, 9_000),  # the price Bob asks
    ]
    orders = clear_flex(req, offers)
    assert [(o.offer.board_id, o.power_w) for o in orders] == [("m-ann", 5_000), ("m-bob", 1_000)]
    record_orders(led, req, orders)
    for o in orders:
        order_w[o.offer.board_id] = o.power_w if o.offer.asset == "battery" else 2_000  # a relay: all off
    sps = {sp.board_id: sp for sp in asyncio.run(d.run(req.start))}
    q = "SELECT buyer, seller, energy FROM schedules WHERE interval=?"
    net = sum(e if b == "ann" else -e for b, s, e in led._conn.execute(q, (req.start,)) if "ann" in (b, s))
    planned = net * 36 // (10 * 900)  # Ann's battery as the market cleared it
    got = {b: messages.decode(bytes(frame.split(sp.frame)[0])) for b, sp in sps.items()}
    ann_o, bob_o = got["m-ann"], got["m-bob"]
    assert isinstance(ann_o, messages.Order) and isinstance(bob_o, messages.Order)
    assert ann_o.bat_w == planned - 5_000  # discharge 5 kW more than planned
    assert (bob_o.relay_mask, bob_o.relay_state) == (1, 0)  # the deferrable load off
    assert "m-cy" not in got or isinstance(got["m-cy"], messages.Order)
    after = asyncio.run(d.run(req.start + 2 * 900))  # the request is over: no flexibility setpoints
    assert all(
        (o := messages.decode(bytes(frame.split(sp.frame)[0]))) and getattr(o, "relay_mask", 0) == 0
        for sp in after
    )
    store(led, [ann, bob, cy], range(req.start + 60, req.start + 2 * 900 + 1, 60))
    settled = verify(led, req, orders, 900)
    assert [s.delivered for s in settled] == [2 * 5_000 * 250, 2 * 1_000 * 250]  # capped at the order
    settle_orders(led, req, settled)
    assert led._conn.execute("SELECT sum(amount) FROM postings WHERE account='flexibility'").fetchone() == (
        0,
    )
    led.close()


def test_integrator_home_follows_its_plan_and_stacks_a_flex_order(tmp_path: Path) -> None:
    """An integrator home's battery is not bid into the market: its setpoint is the first step of
    its own plan. With a flexibility order on the home, the plan discharges into it (the order pays
    more than the energy is worth), and the order is not applied twice."""
    from coordinator.delivery.flexibility import FlexOffer, FlexOrder, FlexRequest, record_orders

    led = Ledger.open(tmp_path / "l.db")
    bat = {"capacity_mwh": 10_000_000, "max_charge_w": 4_000, "max_discharge_w": 4_000}
    led.add_member("sun", "Sun", "prosumer", now=START, feeder="f1")
    led.add_member(
        "home",
        "Home",
        "prosumer",
        now=START,
        feeder="f1",
        prefs=prefs("home", {"storage": bat, "integrator": {}}),
    )
    sun = VirtualBoard("g1", "m-sun", bytes([1]) * 32, lambda t: -4_000)
    home = VirtualBoard("g1", "m-home", bytes([2]) * 32, lambda t: 1_000, bat_soc=500)
    for b, m in ((sun, "sun"), (home, "home")):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
    store(led, [sun, home], range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)

    async def publish(topic: str, payload: bytes) -> None:
        pass

    d = Dispatch(led, SITE, COORD, publish)
    (sp,) = asyncio.run(d.run(START + 900))
    assert led._conn.execute("SELECT count(*) FROM schedules").fetchone() == (0,)  # not in the market
    assert sp.board_id == "m-home" and sp.bat_w == -1_000  # covers its own 1 kW import, exports nothing
    req = FlexRequest("r9", "f1", START + 1800, 1, "reduce", 3_000, 60_000)
    offer = FlexOffer("o", "r9", "home", "m-home", 3_000, 50_000, 0, "battery")
    record_orders(led, req, [FlexOrder("r9:o", offer, 3_000)])
    (sp,) = asyncio.run(d.run(START + 1800))
    o = messages.decode(bytes(frame.split(sp.frame)[0]))
    assert isinstance(o, messages.Order) and o.bat_w == sp.bat_w
    assert -4_000 <= sp.bat_w <= -3_000  # discharges at least the order (once, not twice)
    led.close()


def test_the_grid_check_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """The check (pandapower, tens of ms; here a slow stand-in) runs in a worker thread: other
    tasks of the service (ingest, the API) keep running while it works."""
    import time

    led = Ledger.open(tmp_path / "l.db")
    led.add_member("farm", "Farm", "prosumer", now=START, feeder="f1")
    farm = VirtualBoard("g1", "m-farm", bytes([5]) * 32, lambda t: -30_000)
    led.add_board(farm.board, "virtual", farm.key.public, now=START, member_id="farm", status="active")
    store(led, [farm], range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)

    def slow_check(expected: dict[str, int], assets: dict[str, Any]) -> Any:
        time.sleep(0.3)
        return no_changes()

    async def publish(topic: str, payload: bytes) -> None:
        pass

    async def both(d: Dispatch, start: int) -> int:
        ticks = 0
        task = asyncio.create_task(d.run(start))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.01)
        await task
        return ticks

    d = Dispatch(led, SITE, COORD, publish, check=slow_check)
    assert asyncio.run(both(d, START + 900)) >= 10  # the loop ticked on during the 0.3 s check
    led.close()


def test_the_forecast_adds_back_what_the_check_curtailed(tmp_path: Path) -> None:
    """An interval whose export was limited by the check is forecast as it would have been without
    the limit: persistence of the curtailed flow would call the next interval safe."""
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("farm", "Farm", "prosumer", now=START, feeder="f1")
    farm = VirtualBoard("g1", "m-farm", bytes([5]) * 32, lambda t: -20_000)
    led.add_board(farm.board, "virtual", farm.key.public, now=START, member_id="farm", status="active")
    store(led, [farm], range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)

    assert view.expected(led, 900, START + 900) == {"m-farm": 20_000}  # what was metered
    with led.transaction() as tx:  # the check had limited the farm's export by 10 kW, paused a 2 kW load
        tx.executemany(
            "INSERT INTO redispatches VALUES (?,?,?,?,?,?,?)",
            [
                (START, "m-farm", "pv_limit", -10_000, 20_000, "v_max:C1 1.06 > 1.05", 0),
                (START, "m-farm", "load", 2_000, 0, "v_min:C2 0.94 < 0.95", 0),
                (START, "m-farm", "battery", 3_000, -3_000, "trafo:T1 101 > 98", 0),  # by its bat_p
            ],
        )
    assert view.expected(led, 900, START + 900) == {"m-farm": 28_000}
    led.close()


def test_interval_loop_runs_the_whole_dispatch_once_per_interval(tmp_path: Path) -> None:
    from coordinator.service.interval import IntervalLoop, Rules

    led, _ = street_ledger(tmp_path / "l.db")
    calls: list[int] = []

    def check(expected: dict[str, int], assets: dict[str, Any]) -> Any:
        calls.append(len(expected))
        return no_changes()

    sent: list[str] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append(topic)

    clock = [START + 1000]
    d = Dispatch(led, SITE, COORD, publish, check=check)
    loop = IntervalLoop(led, SITE, Rules(delay=60), COORD, lambda: clock[0], publish, d)
    asyncio.run(loop.step())
    asyncio.run(loop.step())  # same interval: not dispatched twice
    assert calls == [7] and loop.dispatched == START + 900
    orders = [t for t in sent if t.endswith("/order")]
    assert len(orders) == len(set(orders)) >= 3  # the EVs and the battery, once each
    # a restart in the same interval: the new loop finds it dispatched, nothing is sent or paid twice
    again = IntervalLoop(led, SITE, Rules(delay=60), COORD, lambda: clock[0], publish, d)
    asyncio.run(again.step())
    assert calls == [7] and len([t for t in sent if t.endswith("/order")]) == len(orders)
    led.close()


def test_interval_loop_dispatches_the_next_interval_lead_seconds_before_it_starts(tmp_path: Path) -> None:
    """Started in the middle of an interval the loop dispatches the running one at once; the next
    one goes out ``lead`` seconds before it starts (the loop wakes then), once, valid from its
    start, with the newest settled interval as its forecast; a restart in the lead window sends
    nothing again."""
    from coordinator.service.interval import IntervalLoop, Rules

    lead = 30
    led, _ = street_ledger(tmp_path / "l.db")  # START settled
    forecasts: list[dict[str, int]] = []

    def check(expected: dict[str, int], assets: dict[str, Any]) -> Any:
        forecasts.append(expected)
        return no_changes()

    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append((topic, payload))

    def orders() -> list[messages.Order]:
        out = []
        for t, fr in sent:
            if t.endswith("/order"):
                o = frame.open_frame(t, fr, lambda m: crypto.Verifier(COORD.public))
                assert isinstance(o, messages.Order)
                out.append(o)
        return out

    nxt = START + 1800
    clock = [START + 900 + 100]  # a start (or restart) in the middle of START + 900
    d = Dispatch(led, SITE, COORD, publish, check=check)
    loop = IntervalLoop(led, SITE, Rules(delay=60, lead=lead), COORD, lambda: clock[0], publish, d)
    asyncio.run(loop.step())
    running = orders()
    assert running and {o.interval for o in running} == {START + 900}  # as soon as possible
    clock[0] = nxt - lead - 1
    asyncio.run(loop.step())
    assert orders() == running  # not yet
    assert loop._sleep() == 1  # the loop wakes at nxt - lead
    clock[0] = nxt - lead
    asyncio.run(loop.step())
    ahead = orders()[len(running) :]
    assert ahead and {(o.interval, o.valid_from, o.valid_until) for o in ahead} == {(nxt, nxt, nxt + 900)}
    assert len({o.board for o in ahead}) == len(ahead) and loop.dispatched == nxt
    assert forecasts[1] == forecasts[0] and forecasts[1]  # START, the newest settled interval
    for t in (nxt - 10, nxt, nxt + 100):  # up to and into the interval: not dispatched again
        clock[0] = t
        asyncio.run(loop.step())
    assert len(orders()) == len(running) + len(ahead) and len(forecasts) == 2
    # a restart in the lead window: both intervals are found dispatched, nothing goes out again
    clock[0] = nxt - lead + 5
    again = IntervalLoop(led, SITE, Rules(delay=60, lead=lead), COORD, lambda: clock[0], publish, d)
    asyncio.run(again.step())
    assert len(orders()) == len(running) + len(ahead) and len(forecasts) == 2
    led.close()


def test_interval_loop_wakes_for_each_settlement_and_each_dispatch(tmp_path: Path) -> None:
    """The loop sleeps until the next interval's dispatch (``lead`` before its start) or the next
    settlement (``delay`` after an interval's end), whichever comes first; 60 s at most."""
    from coordinator.service.interval import IntervalLoop, Rules

    site = Site("g1", 120, TARIFF)
    clock = [0.0]
    led = Ledger.open(tmp_path / "l.db")
    loop = IntervalLoop(led, site, Rules(delay=10, lead=30), COORD, lambda: clock[0], publish_nothing)
    for now, wait in ((0, 10), (5, 5), (10, 60), (50, 40), (90, 40), (95.5, 34.5), (130, 60)):
        clock[0] = START + now
        assert loop._sleep() == wait, now
    led.close()


async def publish_nothing(topic: str, payload: bytes) -> None:
    pass


def test_ev_offers_flexibility_only_when_it_can_still_leave_full(tmp_path: Path) -> None:
    from coordinator.delivery.flexibility import FlexRequest

    led = Ledger.open(tmp_path / "l.db")
    req = FlexRequest("r1", "f1", START + 3600, 2, "reduce", 5_000, 30_000)
    vbs = []
    for i, leave in enumerate((START + 10 * 3600, req.start + 2 * 900 + 900)):
        ev = {"kind": "ev", "capacity_mwh": 60_000_000, "max_charge_w": 11_000, "phases": 3}
        ev |= {"target_soc": 800, "departure": hhmm(leave)}
        led.add_member(
            f"ev{i}", f"EV {i}", "ev", now=START, feeder="f1", prefs=prefs(f"ev{i}", {"storage": ev})
        )
        vb = VirtualBoard("g1", f"m-ev{i}", bytes([70 + i]) * 32, lambda t: 0, bat_soc=400)
        led.add_board(vb.board, "virtual", vb.key.public, now=START, member_id=f"ev{i}", status="active")
        vbs.append(vb)
    store(led, vbs, range(START, START + 901, 60))

    async def publish(topic: str, payload: bytes) -> None:
        pass

    d = Dispatch(led, SITE, COORD, publish)
    # ev0 leaves in 10 h: it can wait out the request; ev1 leaves 15 minutes after it: it cannot
    assert [(o.board_id, o.asset, o.power_w) for o in d.flex_offers(req)] == [("m-ev0", "ev", 11_000)]
    up = FlexRequest("r2", "f1", START + 3600, 2, "increase", 5_000, 30_000)
    assert [o.board_id for o in d.flex_offers(up)] == ["m-ev0", "m-ev1"]  # both still need energy
    led.close()
