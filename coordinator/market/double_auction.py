"""Per-interval double auction with member price limits and grid fees; three pricing rules.

The grid fee of a local trade is ``grid_fee_local`` when buyer and seller orders name the same
feeder, else ``grid_fee``. A seller's *fee-inclusive ask* for a given buyer is its limit plus that
fee. Bids and asks are taken in book order (see ``orderbook``). Partial fills split orders; every
trade's energy is the smaller of the two remainders.

``"pairwise"`` (Quartierstrom): bids are served highest first. Each bid is filled from the ask
that is cheapest *for it* after fees (on a tie the ask that pays the reduced fee wins, then book
order), again and again, while its limit is at least that fee-inclusive ask; then the next bid.
A bid that finds no crossing ask stays unmatched; matching stops once a bid is below every
remaining ask plus the local fee (no lower bid can match then). Each pair clears at the mean of
the bid and its fee-inclusive ask, rounded down: ``price = (bid + ask + fee) // 2``. The buyer
pays ``price``, the dso gets ``fee`` and the seller ``price - fee``. Quartierstrom example: bid
20, ask 4, fee 6 (Rp/kWh) -> fee-inclusive ask 10, price 15, seller 9, dso 6.

``"pay_as_bid"``: the same matching; each trade is priced at the buyer's bid: the buyer pays its
bid, the dso the fee, the seller ``bid - fee`` (the whole surplus of the pair goes to the seller).

``"uniform"``: one price for every local trade. The supply curve is the asks plus the standard
``grid_fee``; bids (highest first) and fee-inclusive asks (cheapest first) are walked once until
they no longer cross. The price is the mean of the marginal (last matched) bid and fee-inclusive
ask, rounded down. The matched energy is then paired *local first*: within each feeder (sorted by
name) matched buyers and sellers are paired in book order and pay ``grid_fee_local``; what is
left is paired across feeders in book order at ``grid_fee``. The buyer pays the clearing price;
a same-feeder seller keeps the fee reduction. The reduced fee does not extend the crossing:
a pair that crosses only thanks to it is not matched in this scheme.

Every rule is individually rational: a buyer never pays above its (effective) limit, and a
seller never receives below its (effective) limit, because ``ask + fee <= price <= bid``.

Complexity: O(n log n) for the sort, then O(n) for the walk (every step exhausts an order; the
feeder-aware walk's pointers only move forward). Trades are plain tuples appended in the walk,
and the supplier's rows for untouched orders are built by ``zip`` at C speed (``last_resort``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import islice
from operator import attrgetter, itemgetter, mul
from typing import Final

from coordinator.market.errors import UnknownScheme
from coordinator.market.last_resort import ALLOW, settle_asks, settle_bids, settle_remaining
from coordinator.market.orderbook import Book, build_book, split_sorted
from coordinator.market.types import BUY, SELL, Clearing, Order, Tariff, TradeRow, Trades, Unfilled

PAIRWISE: Final = "pairwise"
UNIFORM: Final = "uniform"
PAY_AS_BID: Final = "pay_as_bid"
RULES: Final = (PAIRWISE, UNIFORM, PAY_AS_BID)

_MEAN, _BID, _FIXED = 0, 1, 2  # pricing modes of the walk

_ENERGY = attrgetter("energy")
_FEEDER = attrgetter("feeder")
_LIMIT = attrgetter("limit")
_RANK = attrgetter("rank")


def _neg_limit(o: Order) -> int:
    return -o.limit


_R_ENERGY = itemgetter(2)
_R_PRICE = itemgetter(3)
_State = tuple[int, int, int, int]


def double_auction(
    interval: int, orders: Iterable[Order], tariff: Tariff, rule: str = PAIRWISE, limits: str = ALLOW
) -> Clearing:
    """Clear one interval with ``rule`` (``"pairwise"``, ``"uniform"`` or ``"pay_as_bid"``)."""
    if rule not in RULES:
        raise UnknownScheme(f"double auction rule must be one of {', '.join(RULES)}; got {rule!r}")
    book = build_book(orders, tariff, limits)
    rows: list[TradeRow] = []
    res: list[TradeRow] = []
    unf: list[Unfilled] = []
    if rule == UNIFORM:
        price = _uniform(book, tariff, rows, res, unf)
    else:
        mode = _BID if rule == PAY_AS_BID else _MEAN
        common = _shared_feeders(book, tariff, tariff.grid_fee_local)
        if common:
            _walk_feeders(book, tariff, common, mode, rows, res, unf)
        else:
            _settle_state(book, _walk(book, tariff.grid_fee, mode, 0, rows), tariff, res, unf)
        price = _mean_price(rows)
    return Clearing(interval, rule, Trades(rows), Trades(res), tuple(unf), price)


def _mean_price(rows: list[TradeRow]) -> int | None:
    vol: int = sum(map(_R_ENERGY, rows))
    if not vol:
        return None
    money: int = sum(map(mul, map(_R_ENERGY, rows), map(_R_PRICE, rows)))
    return money // vol


def _shared_feeders(book: Book, tariff: Tariff, least_fee: int) -> frozenset[str]:
    """Feeders with both bids and asks that could cross at ``least_fee``; empty if fees are equal."""
    bids, asks = book
    if tariff.grid_fee_local == tariff.grid_fee or not bids or not asks:
        return frozenset()
    # only the bids above the cheapest ask plus fee, and the asks below the highest bid minus fee
    nb = bisect_right(bids, -(asks[0].limit + least_fee), key=_neg_limit)  # bids[:nb] >= cheapest ask + fee
    na = bisect_right(asks, bids[0].limit - least_fee, key=_LIMIT)  # asks[:na] <= highest bid - fee
    ask_feeders = set(map(_FEEDER, islice(asks, na)))
    ask_feeders.discard(None)
    if not ask_feeders:
        return frozenset()
    return frozenset(f for f in ask_feeders.intersection(map(_FEEDER, islice(bids, nb))) if f is not None)


def _walk(book: Book, fee: int, mode: int, fixed: int, rows: list[TradeRow]) -> _State:
    """Classic two-pointer walk at one fee for every pair; returns ``(i, rb, j, ra)``.

    After the walk ``bids[:i]`` are filled, ``bids[i]`` has ``rb`` mWh left and ``bids[i+1:]`` are
    untouched (``i == len(bids)``: none left); the same for the asks with ``j`` and ``ra``.
    """
    bids, asks = book
    nb = len(bids)
    na = len(asks)
    i = j = 0
    rb = bids[0].energy if nb else 0
    ra = asks[0].energy if na else 0
    if nb and na and bids[0].limit >= asks[0].limit + fee:
        append = rows.append
        b = bids[0]
        a = asks[0]
        bp = b.party
        bid = b.order_id
        ap = a.party
        aid = a.order_id
        bl = b.limit
        al = a.limit + fee
        while True:
            q = rb if rb < ra else ra
            if mode == _MEAN:
                p = (bl + al) >> 1  # floor, also for negative prices
            elif mode == _BID:
                p = bl
            else:
                p = fixed
            append((bp, ap, q, p, fee, bid, aid))
            rb -= q
            ra -= q
            if not rb:
                i += 1
                if i == nb:
                    break
                b = bids[i]
                rb = b.energy
                bp = b.party
                bid = b.order_id
                bl = b.limit
            if not ra:
                j += 1
                if j == na:
                    break
                a = asks[j]
                ra = a.energy
                ap = a.party
                aid = a.order_id
                al = a.limit + fee
            if bl < al:
                break
        if j < na and not ra:  # stopped on the bids' side right after exhausting an ask
            j += 1
            ra = asks[j].energy if j < na else 0
    return i, rb, j, ra


def _settle_state(
    book: Book, state: _State, tariff: Tariff, res: list[TradeRow], unf: list[Unfilled]
) -> None:
    """Supplier settlement after a walk: the partly filled order of each side, then the rest."""
    bids, asks = book
    i, rb, j, ra = state
    if i < len(bids):
        settle_bids(((bids[i], rb),), tariff, res, unf)
        settle_remaining(BUY, bids[i + 1 :], None, tariff, res, unf)
    if j < len(asks):
        settle_asks(((asks[j], ra),), tariff, res, unf)
        settle_remaining(SELL, asks[j + 1 :], None, tariff, res, unf)


def _walk_feeders(
    book: Book,
    tariff: Tariff,
    common: frozenset[str],
    mode: int,
    rows: list[TradeRow],
    res: list[TradeRow],
    unf: list[Unfilled],
) -> None:
    """Pairwise / pay-as-bid matching when some pairs get the reduced local fee.

    Only asks that can cross at all (at most the highest bid minus the local fee) take part. They
    are kept in one book-order list with a pointer, and per shared feeder in a reversed index list
    (the head is the last item) from which exhausted asks are popped; the cheapest fee-inclusive
    ask for a bid is the cheaper of the global head plus ``grid_fee`` and its feeder's head plus
    ``grid_fee_local``.
    """
    bids, asks = book
    gf = tariff.grid_fee
    lf = tariff.grid_fee_local
    na = bisect_right(asks, bids[0].limit - lf, key=_LIMIT)
    a_rem = list(map(_ENERGY, islice(asks, na)))
    a_l = list(map(_LIMIT, islice(asks, na)))
    local: dict[str, list[int]] = {}
    for k, f in enumerate(map(_FEEDER, islice(asks, na))):
        if f in common:
            local.setdefault(f, []).append(k)
    for heads in local.values():
        heads.reverse()
    append = rows.append
    b_rem: list[int] = []
    g = 0
    for b in bids:
        bl = b.limit
        while g < na and not a_rem[g]:
            g += 1
        if g == na or bl < a_l[g] + lf:  # below every remaining fee-inclusive ask: so are all later bids
            break
        rb = b.energy
        bf = b.feeder
        lst = local.get(bf) if bf is not None else None
        while True:
            while g < na and not a_rem[g]:
                g += 1
            if g == na:
                break
            k = g
            fee = gf
            cost = a_l[g] + gf
            if lst:
                while lst and not a_rem[lst[-1]]:
                    lst.pop()
                if lst:
                    kl = lst[-1]
                    cl = a_l[kl] + lf
                    if cl <= cost:
                        k = kl
                        cost = cl
                        fee = lf
            if cost > bl:
                break
            ra = a_rem[k]
            q = rb if rb < ra else ra
            a_rem[k] = ra - q
            rb -= q
            a = asks[k]
            append(
                (b.party, a.party, q, (bl + cost) >> 1 if mode == _MEAN else bl, fee, b.order_id, a.order_id)
            )
            if not rb:
                break
        b_rem.append(rb)
    stop = len(b_rem)
    settle_remaining(BUY, bids[:stop], b_rem, tariff, res, unf)
    settle_remaining(BUY, bids[stop:], None, tariff, res, unf)
    settle_remaining(SELL, asks[:na], a_rem, tariff, res, unf)
    settle_remaining(SELL, asks[na:], None, tariff, res, unf)


def _cross(book: Book, fee: int) -> tuple[tuple[int, int] | None, _State]:
    """The walk at one fee without trades: the marginal (last matched) bid and fee-inclusive ask
    (``None`` if nothing crosses) and the end state ``(i, rb, j, ra)`` as ``_walk`` returns it."""
    bids, asks = book
    nb = len(bids)
    na = len(asks)
    i = j = 0
    rb = bids[0].energy if nb else 0
    ra = asks[0].energy if na else 0
    if not nb or not na or bids[0].limit < asks[0].limit + fee:
        return None, (i, rb, j, ra)
    bl = bids[0].limit
    al = asks[0].limit + fee
    while True:
        last = (bl, al)
        q = rb if rb < ra else ra
        rb -= q
        ra -= q
        if not rb:
            i += 1
            if i == nb:
                break
            b = bids[i]
            rb = b.energy
            bl = b.limit
        if not ra:
            j += 1
            if j == na:
                break
            a = asks[j]
            ra = a.energy
            al = a.limit + fee
        if bl < al:
            break
    if j < na and not ra:
        j += 1
        ra = asks[j].energy if j < na else 0
    return last, (i, rb, j, ra)


def _uniform(
    book: Book, tariff: Tariff, rows: list[TradeRow], res: list[TradeRow], unf: list[Unfilled]
) -> int | None:
    gf = tariff.grid_fee
    marginal, state = _cross(book, gf)
    if marginal is None:
        _settle_state(book, state, tariff, res, unf)
        return None
    price = (marginal[0] + marginal[1]) >> 1
    common = _shared_feeders(book, tariff, gf)
    if not common:
        _settle_state(book, _walk(book, gf, _FIXED, price, rows), tariff, res, unf)
        return price
    # pair what each order trades (the prefix of the book that the walk filled), local first
    i, rb, j, ra = state
    bids, asks = book.bids, book.asks
    mb = list(map(_ENERGY, islice(bids, i)))
    if i < len(bids):
        mb.append(bids[i].energy - rb)
    ma = list(map(_ENERGY, islice(asks, j)))
    if j < len(asks):
        ma.append(asks[j].energy - ra)
    _pair_local_first(book, tariff, common, mb, ma, price, rows)
    _settle_state(book, state, tariff, res, unf)
    return price


def _pair_local_first(
    book: Book,
    tariff: Tariff,
    common: frozenset[str],
    mb: list[int],
    ma: list[int],
    price: int,
    rows: list[TradeRow],
) -> None:
    """Pair matched quantities ``mb``/``ma`` (book order): same feeder first, then across feeders."""
    bids, asks = book.bids, book.asks
    fb: dict[str, list[int]] = {}
    fa: dict[str, list[int]] = {}
    for k, f in enumerate(map(_FEEDER, islice(bids, len(mb)))):
        if f in common:
            fb.setdefault(f, []).append(k)
    for k, f in enumerate(map(_FEEDER, islice(asks, len(ma)))):
        if f in common:
            fa.setdefault(f, []).append(k)
    for f in sorted(common):
        if f in fb and f in fa:
            _pair(book, fb[f], fa[f], mb, ma, price, tariff, rows)
    _pair(book, range(len(mb)), range(len(ma)), mb, ma, price, tariff, rows)


def _pair(
    book: Book,
    xb: Sequence[int],
    xa: Sequence[int],
    mb: list[int],
    ma: list[int],
    price: int,
    tariff: Tariff,
    rows: list[TradeRow],
) -> None:
    """Two-pointer pairing of the quantities left in ``mb``/``ma`` at positions ``xb``/``xa``."""
    bids, asks = book
    lf = tariff.grid_fee_local
    gf = tariff.grid_fee
    append = rows.append
    nb = len(xb)
    na = len(xa)
    x = y = 0
    while x < nb and y < na:
        kb = xb[x]
        qb = mb[kb]
        if not qb:
            x += 1
            continue
        ka = xa[y]
        qa = ma[ka]
        if not qa:
            y += 1
            continue
        q = qb if qb < qa else qa
        mb[kb] = qb - q
        ma[ka] = qa - q
        b = bids[kb]
        a = asks[ka]
        bf = b.feeder
        fee = lf if bf is not None and bf == a.feeder else gf
        append((b.party, a.party, q, price, fee, b.order_id, a.order_id))


def sort_and_cross_bound(orders: Sequence[Order], fee: int = 0) -> int:
    """Benchmark floor: sort into book order, walk the crossing once; returns the traded mWh.

    It does the work no clearing can avoid (the same sort on ``Order.rank`` as ``clear``, and one
    walk at one fee) and nothing else: no checks, no trades, no supplier settlement, no feeders.
    """
    bids, asks = split_sorted(sorted(orders, key=_RANK))
    nb = len(bids)
    na = len(asks)
    if not nb or not na:
        return 0
    i = j = 0
    b = bids[0]
    a = asks[0]
    rb = b.energy
    ra = a.energy
    traded = 0
    while b.limit >= a.limit + fee:
        q = rb if rb < ra else ra
        traded += q
        rb -= q
        ra -= q
        if not rb:
            i += 1
            if i == nb:
                break
            b = bids[i]
            rb = b.energy
        if not ra:
            j += 1
            if j == na:
                break
            a = asks[j]
            ra = a.energy
    return traded
