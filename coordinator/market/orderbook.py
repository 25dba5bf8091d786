"""Checking an interval's orders and sorting them into a canonical book.

Book order (deterministic whatever order the orders arrive in):

- bids: effective limit descending, then energy descending;
- asks: effective limit ascending, then energy descending;
- equal limit and energy: by ``tie``, a 64-bit BLAKE2b hash of the ``order_id`` (stable across
  runs and machines, and unlike the id itself it favours no naming scheme), then by ``order_id``.

``order_id`` is unique within an interval, so this is a total order. Each ``Order`` carries an
integer ``rank`` built from side, limit, energy and ``tie`` when it is made, so the book is one
sort on an integer key at C speed. One pass over the ``tie`` values checks both that the ids are
unique and that no two ranks are equal; only if two hashes collide does the slow path look at the
ids themselves.

Under the ``"clamp"`` limit policy an order past a bound is replaced by a copy with the clamped
limit (bids capped at retail, asks raised to feed-in) before matching, so it sorts, matches and
falls back to the supplier with its effective limit. Trades keep its ``order_id``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from itertools import compress, count, islice
from operator import attrgetter, eq
from typing import NamedTuple

from coordinator.market.errors import DuplicateOrder, InvalidOrder
from coordinator.market.last_resort import ALLOW, CLAMP, REJECT, check_policy, out_of_bounds, past_bound
from coordinator.market.types import _ASK_BIT, BUY, SELL, Order, Tariff

_RANK = attrgetter("rank")
_TIE = attrgetter("tie")
_ID = attrgetter("order_id")


class Book(NamedTuple):
    """Bids and asks in book order (orders past a bound already clamped under ``"clamp"``)."""

    bids: list[Order]
    asks: list[Order]


def _not_orders(out: list[Order]) -> None:
    for k, o in enumerate(out):
        if not isinstance(o, Order):
            raise InvalidOrder(f"item {k} of the orders is a {type(o).__name__}, not an Order")


def check_orders(orders: Iterable[Order]) -> tuple[list[Order], bool]:
    """The orders as a list, and whether two of them share a ``tie`` hash.

    Raises ``InvalidOrder`` for an item that is not an ``Order`` and ``DuplicateOrder`` when an
    ``order_id`` is used twice.
    """
    out = orders if isinstance(orders, list) else list(orders)
    try:
        distinct = len(set(map(_TIE, out))) == len(out)
    except AttributeError:
        _not_orders(out)
        raise
    if not distinct:
        _not_orders(out)
        ids = Counter(map(_ID, out))
        if len(ids) != len(out):
            dups = sorted(i for i, c in ids.items() if c > 1)
            shown = ", ".join(repr(d) for d in dups[:5]) + (", ..." if len(dups) > 5 else "")
            raise DuplicateOrder(f"{len(dups)} order id(s) used more than once in one interval: {shown}")
    return out, not distinct


def _fix_ties(ranked: list[Order]) -> None:
    """Re-sort by ``order_id`` every run of equal rank (two ids with the same hash)."""
    ranks = list(map(_RANK, ranked))
    pos = list(compress(count(1), map(eq, ranks, islice(ranks, 1, None))))
    if not pos:
        return
    start = pos[0] - 1
    prev = pos[0]
    for p in islice(pos, 1, None):
        if p != prev + 1:
            ranked[start : prev + 1] = sorted(ranked[start : prev + 1], key=_ID)
            start = p - 1
        prev = p
    ranked[start : prev + 1] = sorted(ranked[start : prev + 1], key=_ID)


def split_sorted(ranked: list[Order]) -> Book:
    """Split orders sorted by rank into bids and asks."""
    k = bisect_left(ranked, _ASK_BIT, key=_RANK)
    return Book(ranked[:k], ranked[k:])


def _clamp(book: Book, tariff: Tariff) -> Book:
    bids, asks = book
    cap = tariff.retail
    floor = tariff.feed_in
    if bids and bids[0].limit > cap:
        n = 0
        while n < len(bids) and bids[n].limit >= cap:  # all of these share the limit ``cap`` now
            n += 1
        head = [replace(o, limit=cap) if o.limit > cap else o for o in bids[:n]]
        bids = sorted(head, key=_RANK) + bids[n:]
    if asks and asks[0].limit < floor:
        n = 0
        while n < len(asks) and asks[n].limit <= floor:
            n += 1
        head = [replace(o, limit=floor) if o.limit < floor else o for o in asks[:n]]
        asks = sorted(head, key=_RANK) + asks[n:]
    return Book(bids, asks)


def build_book(orders: Iterable[Order], tariff: Tariff, policy: str = ALLOW) -> Book:
    """Check the orders (type, unique ids, limit policy) and sort them into book order."""
    check_policy(policy)
    out, collisions = check_orders(orders)
    ranked = sorted(out, key=_RANK)
    if collisions:
        _fix_ties(ranked)
    book = split_sorted(ranked)
    bids, asks = book
    if (bids and bids[0].limit > tariff.retail) or (asks and asks[0].limit < tariff.feed_in):
        if policy == CLAMP:
            book = _clamp(book, tariff)
            if collisions:
                _fix_ties(book.bids)
                _fix_ties(book.asks)
        elif policy == REJECT:
            bad = [o for o in ranked if past_bound(o, tariff)]
            raise out_of_bounds(min(bad, key=_ID), tariff, len(bad))
    return book


def apply_policy(orders: list[Order], tariff: Tariff, policy: str) -> list[Order]:
    """``orders`` with the limit policy applied one by one (for the schemes without a book)."""
    check_policy(policy)
    if policy == ALLOW:
        return orders
    bad = [o for o in orders if past_bound(o, tariff)]
    if not bad:
        return orders
    if policy == REJECT:
        raise out_of_bounds(min(bad, key=_ID), tariff, len(bad))
    cap = tariff.retail
    floor = tariff.feed_in
    return [
        o if not past_bound(o, tariff) else replace(o, limit=cap if o.limit > cap else floor) for o in orders
    ]


def sides_by_id(orders: Iterable[Order], tariff: Tariff, policy: str) -> tuple[list[Order], list[Order]]:
    """Checked orders under the limit ``policy``, as (buys, sells) each sorted by order id: the
    book of the allocation schemes (self-consumption, bilateral), which match by party, not price."""
    out, _ = check_orders(orders)
    out = apply_policy(out, tariff, policy)
    buys = sorted((o for o in out if o.side == BUY), key=_ID)
    sells = sorted((o for o in out if o.side == SELL), key=_ID)
    return buys, sells
