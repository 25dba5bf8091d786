"""Orders from preferences, meter readings, forecasts and storage state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.market import (
    InvalidOrder,
    InvalidPreference,
    Order,
    Preferences,
    Storage,
    Tariff,
    clear,
    energy_mwh,
    ex_post_orders,
    forecast_orders,
    storage_orders,
)
from tests.market.invariants import check_clearing

T = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=2_000)
I = 1_750_000_000  # noqa: E741
H = 3_600


def test_energy_from_power() -> None:
    assert energy_mwh(1_000, 900) == 250_000  # 1 kW for 15 min = 250 Wh
    assert energy_mwh(1, 1) == 0  # 1 J < 1 mWh (3.6 J): rounded down
    assert energy_mwh(11_000, H) == 11_000_000


def test_ex_post_anchored_on_the_tariff_by_default() -> None:
    p = Preferences("m1", "f1")
    assert ex_post_orders(I, p, T, imported=1_500, exported=500) == (
        Order("m1", "buy", 1_000, 20_750, "f1", f"{I}:m1:buy"),
    )
    assert ex_post_orders(I, p, T, imported=0, exported=700) == (
        Order("m1", "sell", 700, 4_000, "f1", f"{I}:m1:sell"),
    )
    assert ex_post_orders(I, p, T, imported=300, exported=300) == ()
    gross = ex_post_orders(I, Preferences("m1", min_sell=9_000, max_buy=18_000), T, 1_500, 500, net=False)
    assert [(o.side, o.energy, o.limit) for o in gross] == [("buy", 1_500, 18_000), ("sell", 500, 9_000)]


def test_forecast_orders_are_ex_ante() -> None:
    (o,) = forecast_orders(I, Preferences("m2"), T, net=-2_000)
    assert (o.side, o.energy, o.limit, o.kind, o.order_id) == (
        "sell",
        2_000,
        4_000,
        "ex_ante",
        f"{I}:m2:fc-sell",
    )


def test_battery_must_charge_what_cannot_wait() -> None:
    # 10 kWh battery at 2 kWh, target 9 kWh within 2 intervals of 1 h at 4 kW: 7 kWh missing,
    # the next interval can charge 4 kWh, so 3 kWh must be bought now (at retail), 1 kWh may be
    b = Storage(
        "m3",
        "bat",
        capacity=10_000_000,
        soc=2_000_000,
        max_charge_w=4_000,
        target_soc=9_000_000,
        deadline=I + 2 * H,
    )
    orders = storage_orders(I, H, b, T)
    assert [(o.side, o.energy, o.limit, o.order_id) for o in orders] == [
        ("buy", 3_000_000, 20_750, f"{I}:m3:bat:must"),
        ("buy", 1_000_000, 6_000, f"{I}:m3:bat:charge"),  # feed-in + local fee
    ]
    assert all(o.kind == "ex_ante" for o in orders)
    # nobody sells: the must part comes from the supplier, the optional part stays unfilled
    c = clear("pairwise", I, orders, T)
    assert c.grid_imp == 3_000_000 and [u.energy for u in c.unfilled] == [1_000_000]
    check_clearing(c, list(orders), T)


def test_battery_discharges_above_its_reserve() -> None:
    b = Storage("m3", "bat", 10_000_000, 8_000_000, 4_000, max_discharge_w=5_000, min_soc=1_000_000)
    orders = storage_orders(I, H, b, T)
    assert [(o.side, o.energy, o.limit) for o in orders] == [
        ("buy", 2_000_000, 6_000),  # headroom
        ("sell", 5_000_000, (4_000 + 20_750) // 2),  # power-limited
    ]
    held = Storage("m3", "bat", 10_000_000, 8_000_000, 4_000, 5_000, target_soc=7_000_000, deadline=I + H)
    assert [o.energy for o in storage_orders(I, H, held, T) if o.side == "sell"] == [1_000_000]


def test_ev_without_v2g_after_its_deadline() -> None:
    ev = Storage("m4", "ev", 50_000_000, 10_000_000, 11_000, target_soc=40_000_000, deadline=I)
    (o,) = storage_orders(I, 900, ev, T)  # deadline passed: only optional charging
    assert (o.side, o.energy, o.limit) == ("buy", energy_mwh(11_000, 900), 6_000)


@settings(max_examples=300, deadline=None)
@given(
    soc=st.integers(0, 20_000),
    target=st.integers(0, 20_000),
    left=st.integers(0, 6),
    charge=st.integers(0, 30_000),
    discharge=st.integers(0, 30_000),
)
def test_storage_orders_stay_within_capacity_and_power(
    soc: int, target: int, left: int, charge: int, discharge: int
) -> None:
    cap = 20_000
    length = 900
    s = Storage("m", "d", cap, soc, charge, discharge, target_soc=target, deadline=I + left * length)
    orders = storage_orders(I, length, s, T)
    bought = sum(o.energy for o in orders if o.side == "buy")
    sold = sum(o.energy for o in orders if o.side == "sell")
    assert bought <= min(cap - soc, energy_mwh(charge, length))
    assert sold <= min(soc, energy_mwh(discharge, length))
    assert not (bought and sold and any(o.order_id.endswith("must") for o in orders))
    must = sum(o.energy for o in orders if o.order_id.endswith("must"))
    room = min(cap - soc, energy_mwh(charge, length))
    if left >= 1 and target > soc:
        # charging at full power in every interval left still reaches the target, unless the
        # must part already takes all this interval can take
        assert soc + must + (left - 1) * energy_mwh(charge, length) >= target or must == room
    else:
        assert must == 0
    ids = [o.order_id for o in orders]
    assert len(set(ids)) == len(ids)


def test_bad_preferences_are_refused_with_a_reason() -> None:
    with pytest.raises(InvalidPreference, match="soc must be an integer in 0..10"):
        Storage("m", "d", capacity=10, soc=11, max_charge_w=1)
    with pytest.raises(InvalidPreference, match="charge limit 9000 must be below discharge 8000"):
        storage_orders(I, 900, Storage("m", "d", 10, 5, 1, charge_limit=9_000, discharge_limit=8_000), T)
    with pytest.raises(InvalidPreference, match="imported must be an integer"):
        ex_post_orders(I, Preferences("m"), T, imported=-1, exported=0)
    with pytest.raises(InvalidPreference, match="max_buy must be an integer"):
        Preferences("m", max_buy=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidOrder, match="reserved"):
        ex_post_orders(I, Preferences("supplier"), T, imported=1, exported=0)
