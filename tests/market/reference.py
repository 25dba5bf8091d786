"""A slow, literal double auction: the rules of ``double_auction``'s docstring, quadratic time.

Used to check the fast walk (pointers, feeder lists, early stop, local-first pairing, settlement
order) against a version that simply scans every ask for every bid.
"""

from __future__ import annotations

from coordinator.market import EX_POST, SUPPLIER, Clearing, Order, Tariff, Trades
from coordinator.market.types import TradeRow, Unfilled


def _effective(orders: list[Order], tariff: Tariff, policy: str) -> dict[str, int]:
    lim = {}
    for o in orders:
        v = o.limit
        if policy == "clamp":
            v = min(v, tariff.retail) if o.side == "buy" else max(v, tariff.feed_in)
        lim[o.order_id] = v
    return lim


def _book(orders: list[Order], lim: dict[str, int]) -> tuple[list[Order], list[Order]]:
    bids = sorted(
        (o for o in orders if o.side == "buy"), key=lambda o: (-lim[o.order_id], -o.energy, o.tie, o.order_id)
    )
    asks = sorted(
        (o for o in orders if o.side == "sell"), key=lambda o: (lim[o.order_id], -o.energy, o.tie, o.order_id)
    )
    return bids, asks


def _settle(
    bids: list[Order], asks: list[Order], rem: dict[str, int], lim: dict[str, int], tariff: Tariff
) -> tuple[list[TradeRow], list[Unfilled]]:
    res: list[TradeRow] = []
    unf: list[Unfilled] = []
    for o in bids:
        e = rem[o.order_id]
        if e:
            if o.kind == EX_POST or lim[o.order_id] >= tariff.retail:
                res.append((o.party, SUPPLIER, e, tariff.retail, tariff.grid_fee, o.order_id, ""))
            else:
                unf.append(Unfilled(o.order_id, o.party, "buy", e))
    for o in asks:
        e = rem[o.order_id]
        if e:
            if o.kind == EX_POST or lim[o.order_id] <= tariff.feed_in:
                res.append((SUPPLIER, o.party, e, tariff.feed_in, 0, "", o.order_id))
            else:
                unf.append(Unfilled(o.order_id, o.party, "sell", e))
    return res, unf


def ref_double_auction(
    interval: int, orders: list[Order], tariff: Tariff, rule: str, policy: str
) -> Clearing:
    lim = _effective(orders, tariff, policy)
    bids, asks = _book(orders, lim)
    rem = {o.order_id: o.energy for o in orders}
    rows: list[TradeRow] = []
    gf = tariff.grid_fee
    if rule in ("pairwise", "pay_as_bid"):
        for b in bids:
            while rem[b.order_id]:
                best = None
                for pos, a in enumerate(asks):
                    if not rem[a.order_id]:
                        continue
                    fee = tariff.fee(b.feeder, a.feeder)
                    # cheapest fee-inclusive ask; on a tie the one paying the reduced fee; then book order
                    key = (lim[a.order_id] + fee, 0 if fee < gf else 1, pos)
                    if best is None or key < best[0]:
                        best = (key, a, fee)
                if best is None or best[0][0] > lim[b.order_id]:
                    break
                (cost, _, _), a, fee = best
                q = min(rem[b.order_id], rem[a.order_id])
                bl = lim[b.order_id]
                price = (bl + cost) // 2 if rule == "pairwise" else bl
                rows.append((b.party, a.party, q, price, fee, b.order_id, a.order_id))
                rem[b.order_id] -= q
                rem[a.order_id] -= q
        vol = sum(r[2] for r in rows)
        price_out = sum(r[2] * r[3] for r in rows) // vol if vol else None
    else:
        # uniform: walk bids down and asks + grid_fee up until they no longer cross
        matched = {o.order_id: 0 for o in orders}
        rb = {o.order_id: o.energy for o in bids}
        ra = {o.order_id: o.energy for o in asks}
        i = j = 0
        marginal = None
        while i < len(bids) and j < len(asks):
            b, a = bids[i], asks[j]
            if lim[b.order_id] < lim[a.order_id] + gf:
                break
            q = min(rb[b.order_id], ra[a.order_id])
            marginal = (lim[b.order_id], lim[a.order_id] + gf)
            matched[b.order_id] += q
            matched[a.order_id] += q
            rb[b.order_id] -= q
            ra[a.order_id] -= q
            if not rb[b.order_id]:
                i += 1
            if not ra[a.order_id]:
                j += 1
        price_out = None if marginal is None else (marginal[0] + marginal[1]) // 2
        if price_out is not None:
            feeders = sorted({o.feeder for o in bids if o.feeder} & {o.feeder for o in asks if o.feeder})
            if tariff.grid_fee_local == gf:
                feeders = []
            groups = [
                ([b for b in bids if b.feeder == f], [a for a in asks if a.feeder == f]) for f in feeders
            ] + [(bids, asks)]
            for gb, ga in groups:
                for b in gb:
                    for a in ga:
                        q = min(matched[b.order_id], matched[a.order_id])
                        if q:
                            fee = tariff.fee(b.feeder, a.feeder)
                            rows.append((b.party, a.party, q, price_out, fee, b.order_id, a.order_id))
                            matched[b.order_id] -= q
                            matched[a.order_id] -= q
            for o in orders:
                rem[o.order_id] = o.energy - sum(r[2] for r in rows if o.order_id in (r[5], r[6]))
    res, unf = _settle(bids, asks, rem, lim, tariff)
    return Clearing(interval, rule, Trades(rows), Trades(res), tuple(unf), price_out)
