"""Local flexibility market: clearing properties, and delivery verified from signed readings
against a baseline, paid by the grid operator."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.delivery.flexibility import (
    Capability,
    FlexError,
    FlexOffer,
    FlexRequest,
    auto_offers,
    clear_flex,
    injection_change,
    orders_at,
    record_orders,
    settle_orders,
    verify,
)
from coordinator.ledger import Ledger
from coordinator.market import DSO
from coordinator.transaction import billing
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_750_000_000 - 1_750_000_000 % 900
REQ = FlexRequest("r1", "f1", START + 3600, 2, "reduce", 1_000, 30_000)

offers_st = st.lists(
    st.builds(
        lambda i, p, price, m: FlexOffer(f"o{i}", "r1", f"p{i}", f"b{i}", p, price, min(m, p)),
        st.integers(0, 10_000),
        st.integers(1, 3_000),
        st.integers(0, 50_000),
        st.integers(0, 3_000),
    ),
    max_size=12,
    unique_by=lambda o: o.offer_id,
)


@settings(max_examples=300, deadline=None)
@given(offers_st)
def test_clearing_properties(offers: list[FlexOffer]) -> None:
    orders = clear_flex(REQ, offers)
    assert sum(o.power_w for o in orders) <= REQ.power_w  # never more than the need
    for o in orders:
        assert (
            o.offer.price <= REQ.price_cap
            and o.power_w >= o.offer.min_accept_w
            and o.power_w <= o.offer.power_w
        )
    taken = {o.offer.offer_id for o in orders}
    # least cost: an untaken offer within the cap is dearer than every taken one, or did not fit
    for off in offers:
        if off.offer_id not in taken and off.price <= REQ.price_cap and orders:
            left = REQ.power_w - sum(o.power_w for o in orders)
            assert off.price >= max(o.offer.price for o in orders) or min(off.power_w, left) < max(
                off.min_accept_w, 1
            )
    assert clear_flex(REQ, list(reversed(offers))) == orders  # deterministic


def test_bad_input() -> None:
    with pytest.raises(FlexError, match="direction"):
        FlexRequest("r", "f1", 0, 1, "sideways", 1, 1)
    with pytest.raises(FlexError, match="min_accept"):
        FlexOffer("o", "r1", "p", "b", 100, 1, 200)
    with pytest.raises(FlexError, match="answers request"):
        clear_flex(REQ, [FlexOffer("o", "r2", "p", "b", 100, 1)])


def test_delivery_verified_from_readings_and_paid(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("hotel", "Hotel", "consumer", now=START, feeder="f1")
    event = (REQ.start, REQ.start + 2 * 900)
    # the hotel normally draws 3 kW and sheds 1.2 kW during the event
    hotel = VirtualBoard(
        "g1", "m-hotel", bytes([3]) * 32, lambda t: 1_800 if event[0] < t <= event[1] else 3_000
    )
    led.add_board(hotel.board, "virtual", hotel.key.public, now=START, member_id="hotel", status="active")
    store(led, [hotel], range(START, event[1] + 1, 60))
    orders = clear_flex(
        REQ,
        [
            FlexOffer("o1", "r1", "hotel", "m-hotel", 1_000, 12_000, 500),
            FlexOffer("o2", "r1", "x", "m-x", 500, 40_000),
        ],
    )  # above the cap
    assert [o.power_w for o in orders] == [1_000]
    (s,) = verify(led, REQ, orders, 900)
    assert s.baseline == 3_000 * 900 * 10 // 36  # 750 Wh per interval before the event
    assert s.delivered == 2 * 1_000 * 900 * 10 // 36  # 1.2 kW shed, paid up to the 1 kW ordered
    settle_orders(led, REQ, [s])
    pay = billing.statement(led, "hotel", START, event[1])
    assert pay.total == s.payment == s.delivered * 12_000
    assert billing.statement(led, DSO, START, event[1]).total == -s.payment
    assert "Flexibility delivered to the grid operator" in billing.render(pay)
    led.close()


def test_auto_offers_from_capabilities() -> None:
    caps = [
        Capability("ann", "m-ann", "battery", "reduce", 5_000, 1_000),
        Capability("ann", "m-ann", "battery", "increase", 5_000, 1_000),
        Capability("bob", "m-bob", "load", "reduce", 2_000, 2_500),
        Capability("cy", "m-cy", "ev", "increase", 11_000, 800),
        Capability("dee", "m-dee", "load", "reduce", 0, 100),  # off in the request's hours: no offer
    ]
    offers = auto_offers(REQ, caps)  # REQ asks to reduce import
    assert [(o.offer_id, o.power_w, o.min_accept_w, o.asset) for o in offers] == [
        ("m-ann:battery", 5_000, 500, "battery"),
        ("m-bob:load", 2_000, 200, "load"),
    ]
    up = FlexRequest("r2", "f1", START, 1, "increase", 1_000, 5_000)
    assert [o.asset for o in auto_offers(up, caps)] == ["ev", "battery"]  # cheapest first
    assert injection_change("reduce", 700) == 700 and injection_change("increase", 700) == -700


def test_recorded_orders_are_active_in_their_intervals_only(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    orders = clear_flex(REQ, [FlexOffer("o1", "r1", "hotel", "m-hotel", 1_000, 12_000, 0, "load")])
    record_orders(led, REQ, orders)
    assert orders_at(led, REQ.start - 900, 900) == []
    (a,) = orders_at(led, REQ.start, 900)
    assert (a.board_id, a.asset, a.direction, a.power_w, a.price) == (
        "m-hotel",
        "load",
        "reduce",
        1_000,
        12_000,
    )
    assert len(orders_at(led, REQ.start + 900, 900)) == 1 and orders_at(led, REQ.start + 1800, 900) == []
    with pytest.raises(sqlite3.IntegrityError):  # an order is recorded once
        record_orders(led, REQ, orders)
    led.close()
