"""Ex-ante dispatch: a battery is cleared against the other members' forecasts, its board gets a
signed order with the implied setpoint, and the board's signed acknowledgement is recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from coordinator.dispatch import Dispatch
from coordinator.ingest import Ingest
from coordinator.ledger import Ledger
from coordinator.market import Tariff
from coordinator.settlement import settle
from protocol import crypto, frame, messages, topics
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_750_000_000 - 1_750_000_000 % 900
TARIFF = Tariff(4_000, 20_750, 6_000, 3_000)
COORD = crypto.SigningKey(bytes(range(32)))


def test_battery_gets_a_signed_setpoint_and_its_ack_is_recorded(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("sun", "Sun", "prosumer", now=START, feeder="f1")
    led.add_member(
        "bat",
        "Battery",
        "storage",
        now=START,
        feeder="f1",
        prefs={
            "storage": {
                "capacity_mwh": 10_000_000,
                "max_charge_w": 3_000,
                "max_discharge_w": 3_000,
                "min_soc": 100,
            }
        },
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

    d = Dispatch(led, "g1", 900, TARIFF, COORD, publish)
    sps = asyncio.run(d.send(START + 900))
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
    row = led.conn.execute("SELECT ack_status FROM board_orders WHERE board_id='m-bat' AND oseq=1").fetchone()
    assert row == (messages.ST_APPLIED,)
    assert led.next_oseq("m-bat") == 2
    led.close()


def test_schedule_binds_and_deviation_settles_at_last_resort(tmp_path: Path) -> None:
    """The battery was scheduled to charge 750 Wh from the sun at the ex-ante price; it charged
    only 500 Wh. The schedule settles at its price, the 250 Wh shortfall is sold back to the
    supplier at feed-in, the sun's extra export goes through the ex-post market; energy and money
    both balance."""
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("sun", "Sun", "prosumer", now=START, feeder="f1")
    led.add_member(
        "bat",
        "Battery",
        "storage",
        now=START,
        feeder="f1",
        prefs={"storage": {"capacity_mwh": 10_000_000, "max_charge_w": 3_000, "max_discharge_w": 3_000}},
    )
    sun = VirtualBoard("g1", "m-sun", bytes([1]) * 32, lambda t: -4_000)
    bat = VirtualBoard("g1", "m-bat", bytes([2]) * 32, lambda t: 2_000 if t > START + 900 else 0, bat_soc=400)
    for b, m in ((sun, "sun"), (bat, "bat")):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")

    store(led, [sun, bat], range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)

    async def publish(topic: str, payload: bytes) -> None:
        pass

    sps = asyncio.run(Dispatch(led, "g1", 900, TARIFF, COORD, publish).send(START + 900))
    assert sps[0].bat_w == 3_000
    sched = led.conn.execute("SELECT buyer, seller, energy, price FROM schedules").fetchall()
    assert [(b, s, e) for b, s, e, _ in sched] == [("bat", "sun", 750_000)]
    price = sched[0][3]
    store(led, [sun, bat], range(START + 960, START + 1801, 60))
    settle(led, START + 900, 900, "pairwise", TARIFF, {}, now=START + 1860)
    post = dict(
        led.conn.execute(
            "SELECT account, sum(amount) FROM postings WHERE interval=? AND party='bat' GROUP BY account",
            (START + 900,),
        ).fetchall()
    )
    assert post["energy_bought_local"] == -750_000 * price  # the schedule, at its ex-ante price
    d = led.conn.execute(
        "SELECT e_imp FROM deliveries WHERE interval=? AND party='bat'", (START + 900,)
    ).fetchone()
    shortfall = 750_000 - d[0]
    assert 0 < shortfall and post["energy_sold_imbalance"] == shortfall * TARIFF.feed_in
    assert led.conn.execute(
        "SELECT sum(amount) FROM postings WHERE interval=?", (START + 900,)
    ).fetchone() == (0,)
    # the sun: schedule + ex-post add up to what it exported
    e = dict(
        led.conn.execute(
            "SELECT account, sum(energy) FROM postings WHERE interval=? AND party='sun' GROUP BY account",
            (START + 900,),
        ).fetchall()
    )
    exported = led.conn.execute(
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
        prefs={
            "storage": {
                "kind": "ev",
                "capacity_mwh": 60_000_000,
                "max_charge_w": 11_000,
                "phases": 3,
                "target_soc": 800,
                "departure": "{:02d}:{:02d}".format(*divmod((START + 2700) % 86_400 // 60, 60)),
            }
        },
    )  # leaves in 45 minutes
    van = VirtualBoard("g1", "m-van", bytes([4]) * 32, lambda t: 0, bat_soc=400)
    led.add_board(van.board, "virtual", van.key.public, now=START, member_id="van", status="active")
    store(led, [van], [START])

    async def publish(topic: str, payload: bytes) -> None:
        pass

    (sp,) = asyncio.run(Dispatch(led, "g1", 900, TARIFF, COORD, publish).send(START + 900))
    order = messages.decode(bytes(frame.split(sp.frame)[0]))
    assert isinstance(order, messages.Order)
    # 24 kWh missing, 2.75 kWh per interval at most: it must charge flat out, whatever the price
    assert order.bat_w is None and order.ev_ma == 11_000 * 1000 // (230 * 3)
    led.close()


def test_guard_curtailment_is_sent_recorded_and_compensated(tmp_path: Path) -> None:
    from coordinator.delivery.guard import Curtailment

    led = Ledger.open(tmp_path / "l.db")
    led.add_member("farm", "Farm", "prosumer", now=START, feeder="f1")
    farm = VirtualBoard("g1", "m-farm", bytes([5]) * 32, lambda t: -30_000)
    led.add_board(farm.board, "virtual", farm.key.public, now=START, member_id="farm", status="active")
    store(led, [farm], range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)
    seen: list[dict[str, int]] = []

    def guard(expected: dict[str, int]) -> list[Curtailment]:
        seen.append(expected)
        return [
            Curtailment(
                "m-farm", 20_000, -10_000, "v_max:C1 1.0612 > 1.0470", 10_000 * 900 * 10 // 36 * 4_000
            )
        ]

    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append((topic, payload))

    d = Dispatch(led, "g1", 900, TARIFF, COORD, publish, guard=guard)
    asyncio.run(d.protect(START + 900))
    assert seen == [{"m-farm": 30_000}]  # the last interval's export, as the expectation
    ((topic, payload),) = sent
    order = frame.open_frame(topic, payload, lambda m: crypto.Verifier(COORD.public))
    assert isinstance(order, messages.Order) and order.pv_limit_w == 20_000
    row = led.conn.execute("SELECT pv_limit_w, reason FROM curtailments").fetchone()
    assert row == (20_000, "v_max:C1 1.0612 > 1.0470")
    pay = dict(
        led.conn.execute(
            "SELECT party, sum(amount) FROM postings WHERE account='redispatch_compensation' GROUP BY party"
        ).fetchall()
    )
    assert pay["farm"] == 10_000 * 900 * 10 // 36 * 4_000 == -pay["dso"]
    led.close()
