"""Bad input raises the specific ``MarketError`` subclass with a message a person can act on."""

from __future__ import annotations

import pytest

from coordinator.errors import CoordinatorError
from coordinator.market import (
    SCHEMES,
    DuplicateOrder,
    InvalidArgument,
    InvalidOrder,
    InvalidTariff,
    LimitOutOfBounds,
    MarketError,
    Order,
    Tariff,
    Trade,
    Trades,
    UnknownScheme,
    clear,
)
from coordinator.market.orderbook import build_book
from tests.market.strategies import INTERVAL

T = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)


def order(**kw: object) -> Order:
    args: dict[str, object] = {
        "party": "m1",
        "side": "buy",
        "energy": 100,
        "limit": 10_000,
        "feeder": None,
        "order_id": "o1",
    }
    args.update(kw)
    return Order(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"energy": -5}, r"order 'o1' of 'm1': energy must be an integer of mWh in 1\.\.10+, got -5"),
        ({"energy": 0}, "energy must be an integer of mWh"),
        ({"energy": True}, "energy must be an integer of mWh"),
        ({"energy": 1.5}, "energy must be an integer of mWh"),
        ({"energy": 10**12 + 1}, "energy must be an integer of mWh"),
        ({"limit": 10_000_001}, r"limit must be an integer of mc/kWh in -10000000\.\.10000000, got 10000001"),
        ({"limit": "20"}, "limit must be an integer"),
        ({"side": "bid"}, "side must be 'buy' or 'sell', got 'bid'"),
        ({"kind": "spot"}, "kind must be 'ex_post' or 'ex_ante'"),
        ({"order_id": ""}, "order_id must be a non-empty string"),
        ({"party": ""}, "party must be a non-empty string"),
        ({"party": "dso"}, "party 'dso' is reserved"),
        ({"party": "supplier"}, "party 'supplier' is reserved"),
        ({"feeder": ""}, "feeder must be None or a non-empty string"),
    ],
)
def test_invalid_order(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOrder, match=message):
        order(**kw)


def test_errors_share_one_root_under_the_coordinators() -> None:
    assert issubclass(MarketError, CoordinatorError)
    for cls in (
        InvalidOrder,
        DuplicateOrder,
        UnknownScheme,
        InvalidTariff,
        InvalidArgument,
        LimitOutOfBounds,
    ):
        assert issubclass(cls, MarketError)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_duplicate_order_ids(scheme: str) -> None:
    orders = [order(), order(side="sell", limit=4_000), order(order_id="o2"), order(order_id="o2")]
    kw: dict[str, object] = {"contracts": []} if scheme == "bilateral" else {}
    with pytest.raises(
        DuplicateOrder, match=r"2 order id\(s\) used more than once in one interval: 'o1', 'o2'"
    ):
        clear(scheme, INTERVAL, orders, T, **kw)  # type: ignore[arg-type]


def test_unknown_scheme_and_bad_arguments() -> None:
    with pytest.raises(UnknownScheme, match="unknown market scheme 'vickrey'; known: pairwise, uniform"):
        clear("vickrey", INTERVAL, [], T)
    with pytest.raises(InvalidArgument, match="interval must be an integer start time"):
        clear("pairwise", -1, [], T)
    with pytest.raises(
        InvalidArgument, match="limit policy must be one of allow, clamp, reject; got 'ignore'"
    ):
        clear("pairwise", INTERVAL, [], T, limits="ignore")
    with pytest.raises(InvalidArgument, match="tariff must be a Tariff"):
        clear("pairwise", INTERVAL, [], None)  # type: ignore[arg-type]
    with pytest.raises(InvalidOrder, match="item 1 of the orders is a tuple, not an Order"):
        clear("pairwise", INTERVAL, [order(), ("m1", "buy")], T)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"feed_in": 30_000}, "feed_in 30000 is above retail 20750"),
        ({"grid_fee_local": 7_000}, "0 <= grid_fee_local <= grid_fee <= retail"),
        ({"grid_fee": -1, "grid_fee_local": -1}, "0 <= grid_fee_local"),
        ({"retail": 2.5}, "retail must be an integer of mc/kWh"),
    ],
)
def test_invalid_tariff(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"feed_in": 4_000, "retail": 20_750, "grid_fee": 6_000, "grid_fee_local": 3_000}
    args.update(kw)
    with pytest.raises(InvalidTariff, match=message):
        Tariff(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reject_policy_names_the_order(scheme: str) -> None:
    kw: dict[str, object] = {"contracts": []} if scheme == "bilateral" else {}
    orders = [order(limit=25_000), order(order_id="o2", side="sell", limit=1_000)]
    with pytest.raises(
        LimitOutOfBounds,
        match=r"order 'o1' of 'm1': bid limit 25000 mc/kWh is above the retail price 20750 "
        r"\(limit policy 'reject'; 2 orders past",
    ):
        clear(scheme, INTERVAL, orders, T, limits="reject", **kw)  # type: ignore[arg-type]


def test_clamp_caps_bids_at_retail_and_lifts_asks_to_feed_in() -> None:
    orders = [order(limit=30_000), order(order_id="o2", side="sell", limit=0)]
    (t,) = clear("pairwise", INTERVAL, orders, T, limits="clamp").trades
    assert t.price == (20_750 + 4_000 + 6_000) // 2
    (t,) = clear("pairwise", INTERVAL, orders, T).trades  # allowed past the bounds
    assert t.price == (30_000 + 0 + 6_000) // 2


def test_order_rank_ties_fall_back_to_the_order_id() -> None:
    """Two orders whose tie hashes collide (forced here) sort by order_id."""
    a = order(order_id="b-second")
    b = order(order_id="a-first")
    object.__setattr__(a, "tie", b.tie)
    object.__setattr__(a, "rank", b.rank)
    for orders in ([a, b], [b, a]):
        assert [o.order_id for o in build_book(orders, T).bids] == ["a-first", "b-second"]
    with pytest.raises(DuplicateOrder):
        build_book([a, b, order(order_id="a-first", limit=1)], T)


def test_trades_read_as_named_tuples_and_compare_as_rows() -> None:
    rows = (("a", "b", 1, 2, 0, "x", "y"), ("c", "d", 3, 4, 1, "z", "w"))
    ts = Trades(rows)
    assert ts[0] == Trade("a", "b", 1, 2, 0, "x", "y") and ts[0].energy == 1
    assert [t.seller for t in ts] == ["b", "d"]
    assert ts == rows and ts == Trades(list(rows)) and ts != Trades(rows[:1])
    assert ts[1:] == Trades(rows[1:]) and len(ts) == 2
    assert hash(ts) == hash(Trades(rows))
    with pytest.raises(AttributeError):
        ts.rows = ()
