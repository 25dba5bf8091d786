"""Preferred producers: fixed-price (Vandebron) and wholesale-indexed (Bolt) contracts."""

from __future__ import annotations

import pytest

from coordinator.market import (
    PLATFORM,
    SUPPLIER,
    Charge,
    Contract,
    InvalidArgument,
    InvalidContract,
    MissingPrice,
    Order,
    Tariff,
    clear,
    money_flows,
    subscription_charges,
)
from tests.market.invariants import check_clearing
from tests.market.strategies import INTERVAL

T = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=2_000)
YEAR = 365 * 86_400


def fixed(cid: str, consumer: str, price: int, producer: str = "farm", sub: int = 0) -> Contract:
    return Contract(cid, consumer, producer, INTERVAL - 900, INTERVAL + YEAR, price=price, subscription=sub)


def test_fixed_price_pro_rata_to_demand() -> None:
    # farm makes 3 kWh; A wants 4, B 2: A gets 2, B 1, each at its contract price plus the fee
    orders = [
        Order("farm", "sell", 3_000_000, 4_000, "f1", "farm"),
        Order("A", "buy", 4_000_000, 20_750, "f1", "A"),
        Order("B", "buy", 2_000_000, 20_750, "f2", "B"),
    ]
    cs = [fixed("c1", "A", 8_000), fixed("c2", "B", 9_000)]
    c = clear("bilateral", INTERVAL, orders, T, contracts=cs)
    assert [(t.buyer, t.energy, t.price, t.fee) for t in c.trades] == [
        ("A", 2_000_000, 10_000, 2_000),  # same feeder
        ("B", 1_000_000, 15_000, 6_000),
    ]
    assert [(r.buyer, r.seller, r.energy) for r in c.residual] == [
        ("A", SUPPLIER, 2_000_000),
        ("B", SUPPLIER, 1_000_000),
    ]
    assert money_flows(c)["farm"] == 2_000_000 * 8_000 + 1_000_000 * 9_000
    check_clearing(c, orders, T)


def test_supply_above_demand_and_consumers_without_contract() -> None:
    orders = [
        Order("farm", "sell", 5_000, 4_000, None, "farm"),
        Order("A", "buy", 1_000, 20_750, None, "A"),
        Order("Z", "buy", 1_000, 20_750, None, "Z"),  # no contract: supplier
    ]
    c = clear("bilateral", INTERVAL, orders, T, contracts=[fixed("c1", "A", 8_000)])
    assert [(t.buyer, t.energy) for t in c.trades] == [("A", 1_000)]
    assert [(r.buyer, r.seller, r.energy) for r in c.residual] == [
        ("Z", SUPPLIER, 1_000),
        (SUPPLIER, "farm", 4_000),
    ]


def test_wholesale_indexed_price_is_clamped_to_the_tariff_band() -> None:
    c = Contract("bolt", "A", "farm", 0, INTERVAL + 900, markup=1_000)
    assert c.energy_price(INTERVAL, T, {INTERVAL: 5_000}) == 6_000
    assert c.energy_price(INTERVAL, T, {INTERVAL: 30_000}) == 20_750 - 6_000  # cap: retail - fee
    assert c.energy_price(INTERVAL, T, {INTERVAL: -3_000}) == 4_000  # floor: feed-in
    own = Contract("bolt", "A", "farm", 0, INTERVAL + 900, markup=1_000, floor=0, cap=9_000)
    assert own.energy_price(INTERVAL, T, {INTERVAL: -3_000}) == 0
    orders = [Order("farm", "sell", 10, 4_000, None, "s"), Order("A", "buy", 10, 20_750, None, "b")]
    cl = clear("bilateral", INTERVAL, orders, T, contracts=[c], wholesale={INTERVAL: 7_000})
    assert [(t.price, t.fee) for t in cl.trades] == [(8_000 + 6_000, 6_000)]
    with pytest.raises(MissingPrice, match=f"no price for interval {INTERVAL}"):
        clear("bilateral", INTERVAL, orders, T, contracts=[c], wholesale={})


def test_limits_exclude_orders_from_the_contract() -> None:
    orders = [Order("farm", "sell", 10, 9_000, None, "s"), Order("A", "buy", 10, 20_750, None, "b")]
    c = clear("bilateral", INTERVAL, orders, T, contracts=[fixed("c1", "A", 8_000)])
    assert c.trades == ()  # the farm asks 9_000 but the contract pays 8_000


def test_contract_term_and_subscriptions() -> None:
    cs = [
        Contract("c1", "A", "farm", 1_000, 2_000, price=8_000, subscription=500_000_000),
        Contract(
            "c2", "B", "farm", 2_000, 3_000, price=8_000, subscription=700_000_000, subscription_to="producer"
        ),
        Contract("c3", "C", "farm", 0, 5_000, price=8_000),
    ]
    # paid to the platform operator, or to the producer where the contract says so
    assert subscription_charges(cs, 1_500, 2_500) == (
        Charge("A", PLATFORM, 500_000_000, "subscription c1"),
        Charge("B", "farm", 700_000_000, "subscription c2"),
    )
    assert subscription_charges(cs, 2_000, 2_100) == (Charge("B", "farm", 700_000_000, "subscription c2"),)
    with pytest.raises(InvalidContract, match="subscription_to"):
        Contract("c4", "D", "farm", 0, 5_000, price=8_000, subscription_to="supplier")
    orders = [Order("farm", "sell", 10, 4_000, None, "s"), Order("A", "buy", 10, 20_750, None, "b")]
    assert clear("bilateral", 2_000, orders, T, contracts=cs).trades == ()  # c1 ended at 2_000
    flows = money_flows(
        clear("bilateral", 1_000, orders, T, contracts=cs), subscription_charges(cs, 1_000, 1_900)
    )
    assert sum(flows.values()) == 0


def test_bad_contracts_are_refused_with_a_reason() -> None:
    with pytest.raises(InvalidContract, match="exactly one of price"):
        Contract("c", "A", "B", 0, 10)
    with pytest.raises(InvalidContract, match="exactly one of price"):
        Contract("c", "A", "B", 0, 10, price=1, markup=1)
    with pytest.raises(InvalidContract, match="same party"):
        Contract("c", "A", "A", 0, 10, price=1)
    with pytest.raises(InvalidContract, match="start < end"):
        Contract("c", "A", "B", 10, 10, price=1)
    with pytest.raises(InvalidContract, match="floor 5 is above cap 4"):
        Contract("c", "A", "B", 0, 10, markup=0, floor=5, cap=4)
    two = [fixed("c1", "A", 8_000), fixed("c2", "A", 9_000, producer="sun")]
    with pytest.raises(InvalidContract, match="consumer 'A' has two contracts active"):
        clear("bilateral", INTERVAL, [], T, contracts=two)
    with pytest.raises(InvalidContract, match="used twice"):
        clear("bilateral", INTERVAL, [], T, contracts=[fixed("c1", "A", 1), fixed("c1", "B", 1)])
    with pytest.raises(InvalidArgument, match="needs contracts"):
        clear("bilateral", INTERVAL, [], T)
    with pytest.raises(InvalidArgument, match="bilateral scheme only"):
        clear("uniform", INTERVAL, [], T, contracts=[])
