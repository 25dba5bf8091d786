"""Double auction: hand-computed examples per pricing rule, and the fast walk against a literal one."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.market import (
    DSO,
    SUPPLIER,
    Order,
    Tariff,
    Trade,
    clear,
    money_flows,
    sort_and_cross_bound,
)
from tests.market.reference import ref_double_auction
from tests.market.strategies import DA_SCHEMES, INTERVAL, Case, cases

MANY = settings(max_examples=300, deadline=None)
KWH = 1_000_000  # mWh
# Quartierstrom (Walenstadt): feed-in 4 Rp/kWh, retail 20.75 Rp/kWh, grid fee ~6 Rp/kWh
QS = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)


def buy(
    oid: str, energy: int, limit: int, party: str = "", feeder: str | None = None, kind: str = "ex_post"
) -> Order:
    return Order(party or oid, "buy", energy, limit, feeder, oid, kind)  # type: ignore[arg-type]


def sell(
    oid: str, energy: int, limit: int, party: str = "", feeder: str | None = None, kind: str = "ex_post"
) -> Order:
    return Order(party or oid, "sell", energy, limit, feeder, oid, kind)  # type: ignore[arg-type]


def test_quartierstrom_example_pairwise() -> None:
    # bid 20 Rp, ask 4 Rp, fee 6 Rp -> fee-inclusive ask 10, pair price 15; seller 9, dso 6
    c = clear("pairwise", INTERVAL, [buy("b", KWH, 20_000), sell("s", KWH, 4_000)], QS)
    assert list(c.trades) == [Trade("b", "s", KWH, 15_000, 6_000, "b", "s")]
    assert c.residual == () and c.price == 15_000
    flows = money_flows(c)
    assert flows == {"b": -15_000 * KWH, "s": 9_000 * KWH, DSO: 6_000 * KWH}  # 15 Rp, 9 Rp, 6 Rp
    assert (c.traded, c.grid_imp, c.grid_exp, c.n_trades) == (KWH, 0, 0, 1)


BOOK = [
    buy("A", 3 * KWH, 20_000),
    buy("B", 2 * KWH, 12_000),
    sell("S", 2 * KWH, 4_000),
    sell("T", 4 * KWH, 7_000),
]


def test_pairwise_partial_fills_and_supplier() -> None:
    # fee-inclusive asks: S 10_000, T 13_000. A meets S (2 kWh at 15_000), then T (1 kWh at
    # (20_000 + 13_000) / 2 = 16_500). B (12_000) is below T's 13_000: it buys from the supplier.
    c = clear("pairwise", INTERVAL, BOOK, QS)
    assert list(c.trades) == [
        Trade("A", "S", 2 * KWH, 15_000, 6_000, "A", "S"),
        Trade("A", "T", 1 * KWH, 16_500, 6_000, "A", "T"),
    ]
    assert list(c.residual) == [
        Trade("B", SUPPLIER, 2 * KWH, 20_750, 6_000, "B", ""),
        Trade(SUPPLIER, "T", 3 * KWH, 4_000, 0, "", "T"),
    ]
    assert c.price == 15_500  # (2 x 15_000 + 1 x 16_500) / 3
    assert sum(money_flows(c).values()) == 0


def test_uniform_midpoint_of_marginal_pair() -> None:
    # same matches; the marginal pair is A (20_000) and T (7_000 + 6_000): price 16_500 for all
    c = clear("uniform", INTERVAL, BOOK, QS)
    assert list(c.trades) == [
        Trade("A", "S", 2 * KWH, 16_500, 6_000, "A", "S"),
        Trade("A", "T", 1 * KWH, 16_500, 6_000, "A", "T"),
    ]
    assert c.price == 16_500
    assert money_flows(c)["S"] == 2 * KWH * 10_500


def test_pay_as_bid_seller_gets_bid_minus_fee() -> None:
    c = clear("pay_as_bid", INTERVAL, BOOK, QS)
    assert [(t.seller, t.energy, t.price, t.price - t.fee) for t in c.trades] == [
        ("S", 2 * KWH, 20_000, 14_000),
        ("T", 1 * KWH, 20_000, 14_000),
    ]
    assert c.price == 20_000


def test_pairwise_same_feeder_ask_wins_a_tie_and_pays_the_local_fee() -> None:
    t = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=2_000)
    # S (other feeder) 4_000 + 6_000 = 10_000; L (same feeder) 8_000 + 2_000 = 10_000: L wins
    orders = [
        buy("A", KWH, 11_000, feeder="f1"),
        sell("S", KWH, 4_000, feeder="f2"),
        sell("L", KWH, 8_000, feeder="f1"),
    ]
    c = clear("pairwise", INTERVAL, orders, t)
    assert list(c.trades) == [Trade("A", "L", KWH, 10_500, 2_000, "A", "L")]
    # L a little dearer: 8_500 + 2_000 = 10_500 > 10_000, S wins at the full fee
    orders[2] = sell("L", KWH, 8_500, feeder="f1")
    c = clear("pairwise", INTERVAL, orders, t)
    assert list(c.trades) == [Trade("A", "S", KWH, 10_500, 6_000, "A", "S")]


def test_pairwise_lower_bid_may_match_locally_after_a_higher_bid_fails() -> None:
    t = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=2_000)
    # X (f1, 10_000) faces Z at 5_000 + 6_000 = 11_000: no; Y (f2, 9_000) gets Z locally at 7_000
    orders = [
        buy("X", KWH, 10_000, feeder="f1"),
        buy("Y", KWH, 9_000, feeder="f2"),
        sell("Z", KWH, 5_000, feeder="f2"),
    ]
    c = clear("pairwise", INTERVAL, orders, t)
    assert list(c.trades) == [Trade("Y", "Z", KWH, 8_000, 2_000, "Y", "Z")]
    assert [r.buyer for r in c.residual] == ["X"]


def test_uniform_pairs_same_feeder_first() -> None:
    t = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)
    orders = [
        buy("b", 1_000, 20_000, feeder="f1"),
        sell("s", 700, 4_000, feeder="f1"),
        sell("s2", 700, 3_000, feeder="f2"),
    ]
    c = clear("uniform", INTERVAL, orders, t)
    # walk: b takes s2 (700) then s (300); marginal (20_000, 4_000 + 6_000) -> 15_000.
    # pairing local first: b-s on f1 (300, local fee), then b-s2 (700, full fee)
    assert list(c.trades) == [
        Trade("b", "s", 300, 15_000, 3_000, "b", "s"),
        Trade("b", "s2", 700, 15_000, 6_000, "b", "s2"),
    ]
    assert list(c.residual) == [Trade(SUPPLIER, "s", 400, 4_000, 0, "", "s")]


def test_pair_price_rounds_down_also_below_zero() -> None:
    t = Tariff(feed_in=-10_000, retail=20_000, grid_fee=0, grid_fee_local=0)
    c = clear("pairwise", INTERVAL, [buy("b", 10, 20_001), sell("s", 10, 10_000)], t)
    assert c.trades[0].price == 15_000  # floor(30_001 / 2)
    c = clear("pairwise", INTERVAL, [buy("b", 10, -100), sell("s", 10, -5_001)], t)
    assert c.trades[0].price == -2_551  # floor(-5_101 / 2)


def test_no_cross_everything_goes_to_the_supplier() -> None:
    for scheme in DA_SCHEMES:
        c = clear(scheme, INTERVAL, [buy("b", 5, 9_000), sell("s", 7, 4_000)], QS)  # 9_000 < 10_000
        assert c.trades == () and c.price is None
        assert list(c.residual) == [
            Trade("b", SUPPLIER, 5, 20_750, 6_000, "b", ""),
            Trade(SUPPLIER, "s", 7, 4_000, 0, "", "s"),
        ]


def test_ex_ante_remainder_needs_a_limit_that_accepts_the_supplier() -> None:
    orders = [
        buy("charge", 5, 9_000, kind="ex_ante"),  # would not pay retail: unfilled
        buy("must", 5, 20_750, kind="ex_ante"),  # accepts retail: supplier fills
        sell("dis", 5, 12_000, kind="ex_ante"),  # would not sell at feed-in: unfilled
    ]
    c = clear("pairwise", INTERVAL, orders, QS)
    # must (20_750) meets dis (12_000 + 6_000): 5 mWh at 19_375
    assert list(c.trades) == [Trade("must", "dis", 5, 19_375, 6_000, "must", "dis")]
    assert [(u.order_id, u.energy) for u in c.unfilled] == [("charge", 5)]
    assert c.residual == ()


def test_empty_and_one_sided_books() -> None:
    for scheme in DA_SCHEMES:
        c = clear(scheme, INTERVAL, [], QS)
        assert not c.trades and not c.residual and not c.unfilled and c.price is None
        c = clear(scheme, INTERVAL, [sell("s", 3, 4_000), sell("t", 2, 1_000)], QS)
        assert [r.sell_order_id for r in c.residual] == ["t", "s"]  # book order: cheapest ask first


@pytest.mark.parametrize("rule", DA_SCHEMES)
@MANY
@given(data=st.data())
def test_fast_walk_equals_literal_rules(rule: str, data: st.DataObject) -> None:
    case: Case = data.draw(cases(rule, limits=["allow", "clamp"]))
    got = clear(rule, INTERVAL, case.orders, case.tariff, limits=case.limits)
    want = ref_double_auction(INTERVAL, case.orders, case.tariff, rule, case.limits)
    assert got.canonical() == want.canonical()


def test_sort_and_cross_bound_matches_the_walk() -> None:
    rng = random.Random(7)
    orders = [
        Order(
            f"m{k % 50}",
            rng.choice(["buy", "sell"]),
            rng.randint(1, 5_000),
            rng.randint(4_000, 20_750),
            None,
            f"o{k}",
        )
        for k in range(2_000)
    ]
    c = clear("uniform", INTERVAL, orders, QS)
    assert sort_and_cross_bound(orders, QS.grid_fee) == c.traded
    assert sort_and_cross_bound([], 0) == 0


def test_clearing_is_o_n_log_n_not_quadratic() -> None:
    """10x the orders must cost well under 100x the time (a quadratic walk would)."""
    import time

    def run(n: int) -> float:
        rng = random.Random(n)
        orders = [
            Order(
                f"m{k % 97}",
                rng.choice(["buy", "sell"]),
                rng.randint(1, 5_000),
                rng.randint(4_000, 20_750),
                rng.choice([None, "f1", "f2", "f3"]),
                f"o{k}",
            )
            for k in range(n)
        ]
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            clear("pairwise", INTERVAL, orders, QS)
            best = min(best, time.perf_counter() - t0)
        return best

    # 20x the orders: n log n costs ~26x, quadratic 400x; the margin absorbs a busy machine
    assert run(40_000) < 100 * run(2_000)


@pytest.mark.parametrize("rule", DA_SCHEMES)
@pytest.mark.parametrize("policy", ["allow", "clamp"])
def test_larger_books_equal_literal_rules(rule: str, policy: str) -> None:
    """Hundreds of orders on several feeders, many ties, ex-ante mixed in."""
    rng = random.Random(f"{rule}/{policy}")
    t = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=1_500)
    orders = [
        Order(
            f"m{rng.randrange(40)}",
            rng.choice(["buy", "sell"]),
            rng.choice([100, 1_000, rng.randint(1, 5_000)]),
            rng.choice([4_000, 20_750, rng.randint(0, 25_000)]),
            rng.choice([None, "f1", "f2", "f3", "f4"]),
            f"o{k}",
            rng.choice(["ex_post", "ex_post", "ex_ante"]),
        )
        for k in range(400)
    ]
    got = clear(rule, INTERVAL, orders, t, limits=policy)
    assert got.canonical() == ref_double_auction(INTERVAL, orders, t, rule, policy).canonical()
    assert got.trades and got.residual and got.unfilled
