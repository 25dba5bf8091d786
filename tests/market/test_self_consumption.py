"""Collective self-consumption: hand-computed allocations with static and dynamic keys."""

from __future__ import annotations

import pytest

from coordinator.market import (
    DSO,
    SUPPLIER,
    InvalidArgument,
    InvalidSharing,
    Order,
    Sharing,
    Tariff,
    Trade,
    clear,
    money_flows,
)
from tests.market.invariants import check_bounds, check_clearing
from tests.market.strategies import INTERVAL

T = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=2_000)


def roof(energy: int, limit: int = 4_000, oid: str = "P", feeder: str | None = "b1") -> Order:
    return Order("roof", "sell", energy, limit, feeder, oid)


def use(party: str, energy: int, limit: int = 20_750, feeder: str | None = "b1", oid: str = "") -> Order:
    return Order(party, "buy", energy, limit, feeder, oid or party)


def shares(c) -> dict[str, int]:  # type: ignore[no-untyped-def]
    out: dict[str, int] = {}
    for t in c.trades:
        out[t.buyer] = out.get(t.buyer, 0) + t.energy
    return out


def test_dynamic_keys_pro_rata_with_largest_remainder() -> None:
    # 10_000 mWh over consumption 6_000 / 3_000 / 5_000 (14_000): quotas 4_285.7, 2_142.9, 3_571.4;
    # floors 4_285 + 2_142 + 3_571 = 9_998; the 2 mWh left go to B (.857) and A (.714)
    orders = [roof(10_000), use("A", 6_000), use("B", 3_000), use("C", 5_000)]
    c = clear("self_consumption", INTERVAL, orders, T, sharing=Sharing(community_price=12_000))
    assert shares(c) == {"A": 4_286, "B": 2_143, "C": 3_571}
    assert all(t.price == 12_000 and t.fee == 2_000 for t in c.trades)  # same building: local fee
    assert c.price == 12_000
    assert [(r.buyer, r.energy, r.price) for r in c.residual] == [
        ("A", 1_714, 20_750),
        ("B", 857, 20_750),
        ("C", 1_429, 20_750),
    ]
    flows = money_flows(c)
    assert flows["roof"] == 10_000 * 10_000  # 12_000 - 2_000 per kWh
    assert flows[DSO] == 10_000 * 2_000 + (1_714 + 857 + 1_429) * 6_000
    assert sum(flows.values()) == 0
    check_clearing(c, orders, T)
    check_bounds(c, T)


def test_dynamic_keys_surplus_above_consumption_goes_to_the_retailer() -> None:
    orders = [roof(10_000), use("A", 2_000), use("B", 3_000)]
    c = clear("self_consumption", INTERVAL, orders, T)
    assert shares(c) == {"A": 2_000, "B": 3_000}
    assert list(c.residual) == [Trade(SUPPLIER, "roof", 5_000, 4_000, 0, "", "P")]
    assert c.price == (4_000 + 2_000 + 20_750) // 2  # default community price


def test_static_keys_capped_at_consumption_and_rest_sold() -> None:
    # keys 50% / 30% / 20%: 5_000 / 3_000 / 2_000; B consumes only 1_000, so 2_000 go to the retailer
    orders = [roof(10_000), use("A", 6_000), use("B", 1_000), use("C", 5_000)]
    sharing = Sharing({"A": 5_000, "B": 3_000, "C": 2_000}, 12_000)
    c = clear("self_consumption", INTERVAL, orders, T, sharing=sharing)
    assert shares(c) == {"A": 5_000, "B": 1_000, "C": 2_000}
    assert [(r.buyer, r.seller, r.energy) for r in c.residual] == [
        ("A", SUPPLIER, 1_000),
        ("C", SUPPLIER, 3_000),
        (SUPPLIER, "roof", 2_000),
    ]
    check_clearing(c, orders, T)


def test_static_keys_unkeyed_part_and_remainders() -> None:
    # keys 1/3 each of 99.99%: 3_333 bps x 3 = 9_999; 1 bp unkeyed. 7 mWh: quotas 2.3331 each + 0.0007
    orders = [roof(7), use("A", 100), use("B", 100), use("C", 100)]
    c = clear("self_consumption", INTERVAL, orders, T, sharing=Sharing({"A": 3_333, "B": 3_333, "C": 3_333}))
    assert shares(c) == {"A": 3, "B": 2, "C": 2}  # the 1 mWh remainder goes to the first party id
    assert c.grid_exp == 0


def test_members_limits_and_other_feeders() -> None:
    orders = [
        roof(9_000),
        use("A", 3_000, feeder="b2"),  # another feeder: full grid fee
        use("B", 3_000, limit=11_000),  # would not pay the 12_000 community price: supplier
        use("C", 3_000),
    ]
    c = clear("self_consumption", INTERVAL, orders, T, sharing=Sharing(community_price=12_000))
    assert [(t.buyer, t.energy, t.fee) for t in c.trades] == [("A", 3_000, 6_000), ("C", 3_000, 2_000)]
    assert c.grid_exp == 3_000
    check_clearing(c, orders, T)


def test_two_producers_share_in_turn() -> None:
    orders = [roof(3_000, oid="P1"), roof(3_000, oid="P2", feeder="b2"), use("A", 4_000), use("B", 4_000)]
    c = clear("self_consumption", INTERVAL, orders, T)
    assert [(t.buyer, t.sell_order_id, t.energy) for t in c.trades] == [
        ("A", "P1", 1_500),
        ("B", "P1", 1_500),
        ("A", "P2", 1_500),
        ("B", "P2", 1_500),
    ]


def test_bad_sharing_is_refused_with_a_reason() -> None:
    with pytest.raises(InvalidSharing, match="add up to 10001 basis points"):
        Sharing({"A": 5_000, "B": 5_001})
    with pytest.raises(InvalidSharing, match="basis points in 0..10000"):
        Sharing({"A": -1})
    with pytest.raises(InvalidSharing, match="not a member party id"):
        Sharing({"supplier": 10})
    with pytest.raises(InvalidSharing, match="outside the tariff bounds"):
        clear("self_consumption", INTERVAL, [], T, sharing=Sharing(community_price=30_000))
    with pytest.raises(InvalidArgument, match="self_consumption scheme only"):
        clear("pairwise", INTERVAL, [], T, sharing=Sharing())
