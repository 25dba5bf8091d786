"""Conservation and rationality checks every clearing must pass, written independently of the code."""

from __future__ import annotations

from collections import Counter

from coordinator.market import (
    BUY,
    DSO,
    EX_POST,
    SELL,
    SUPPLIER,
    Clearing,
    Order,
    Tariff,
    money_flows,
)


def effective(o: Order, tariff: Tariff, policy: str) -> int:
    if policy != "clamp":
        return o.limit
    if o.side == BUY:
        return min(o.limit, tariff.retail)
    return max(o.limit, tariff.feed_in)


def check_clearing(c: Clearing, orders: list[Order], tariff: Tariff, policy: str = "allow") -> None:
    """Energy balance, no double fills, money conservation, individual rationality, fee rule."""
    by_id = {o.order_id: o for o in orders}
    assert len(by_id) == len(orders)
    filled: Counter[str] = Counter()
    pairs: set[tuple[str, str]] = set()

    # local trades: member to member, within limits, right fee
    for t in c.trades:
        assert t.energy > 0
        b = by_id[t.buy_order_id]
        s = by_id[t.sell_order_id]
        assert (b.side, s.side) == (BUY, SELL)
        assert (t.buyer, t.seller) == (b.party, s.party)
        assert (t.buy_order_id, t.sell_order_id) not in pairs, "an order pair filled twice"
        pairs.add((t.buy_order_id, t.sell_order_id))
        assert t.fee == tariff.fee(b.feeder, s.feeder)
        # individual rationality against the member's own (original) limits
        assert t.price <= b.limit, (t, b)
        assert t.price - t.fee >= s.limit, (t, s)
        filled[b.order_id] += t.energy
        filled[s.order_id] += t.energy

    # supplier trades: retail / feed-in, one member order each
    for t in c.residual:
        assert t.energy > 0
        if t.seller == SUPPLIER:
            o = by_id[t.buy_order_id]
            assert t.sell_order_id == "" and o.side == BUY and t.buyer == o.party
            assert (t.price, t.fee) == (tariff.retail, tariff.grid_fee)
            assert o.kind == EX_POST or effective(o, tariff, policy) >= tariff.retail
        else:
            assert t.buyer == SUPPLIER
            o = by_id[t.sell_order_id]
            assert t.buy_order_id == "" and o.side == SELL and t.seller == o.party
            assert (t.price, t.fee) == (tariff.feed_in, 0)
            assert o.kind == EX_POST or effective(o, tariff, policy) <= tariff.feed_in
        filled[o.order_id] += t.energy

    # unfilled: ex-ante only, and only what the supplier's price would break the limit for
    for u in c.unfilled:
        o = by_id[u.order_id]
        assert o.kind != EX_POST and u.energy > 0 and (u.party, u.side) == (o.party, o.side)
        if o.side == BUY:
            assert effective(o, tariff, policy) < tariff.retail
        else:
            assert effective(o, tariff, policy) > tariff.feed_in
        filled[o.order_id] += u.energy
    assert len({u.order_id for u in c.unfilled}) == len(c.unfilled)

    # energy balance per order: local + supplier + unfilled == energy, never more
    for o in orders:
        assert filled[o.order_id] == o.energy, (o, filled[o.order_id])
    assert set(filled) <= set(by_id)

    # bought = sold locally; supplier totals
    assert c.traded == sum(t.energy for t in c.trades)
    assert c.grid_imp == sum(t.energy for t in c.residual if t.seller == SUPPLIER)
    assert c.grid_exp == sum(t.energy for t in c.residual if t.buyer == SUPPLIER)
    demand = sum(o.energy for o in orders if o.side == BUY)
    supply = sum(o.energy for o in orders if o.side == SELL)
    unf_b = sum(u.energy for u in c.unfilled if u.side == BUY)
    unf_s = sum(u.energy for u in c.unfilled if u.side == SELL)
    assert demand == c.traded + c.grid_imp + unf_b
    assert supply == c.traded + c.grid_exp + unf_s

    # money: every interval sums to zero, and each party's flow is what its trades say
    flows = money_flows(c)
    assert sum(flows.values()) == 0
    expect: Counter[str] = Counter()
    for t in c.all_trades():
        expect[t.buyer] -= t.energy * t.price
        expect[t.seller] += t.energy * (t.price - t.fee)
        expect[DSO] += t.energy * t.fee
    assert {k: v for k, v in flows.items() if v} == {k: v for k, v in expect.items() if v}

    # summary price
    assert (c.price is None) == (not c.trades)


def check_bounds(c: Clearing, tariff: Tariff) -> None:
    """Every local price, paid and received, lies within [feed_in, retail]."""
    for t in c.trades:
        assert tariff.feed_in <= t.price <= tariff.retail, t
        assert tariff.feed_in <= t.price - t.fee <= tariff.retail, t
    if c.price is not None:
        assert tariff.feed_in <= c.price <= tariff.retail
