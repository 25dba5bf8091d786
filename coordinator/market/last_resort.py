"""The supplier of last resort and the price bounds: feed-in tariff below, retail price above.

Supplier rules (every scheme):

- Whatever an **ex-post** order did not trade locally is settled with ``SUPPLIER``: remaining
  demand is bought at ``retail`` (fee ``grid_fee``, which the supplier passes to the dso),
  remaining surplus is sold at ``feed_in`` (no fee). The energy has already flowed, so the member's
  limit does not apply to this fallback.
- An **ex-ante** order (a plan) is filled by the supplier only if its limit accepts the supplier's
  price: a buy limit ``>= retail``, a sell limit ``<= feed_in``. Otherwise the remainder is
  ``Unfilled`` and the device does not run it.

Member limits against the bounds (the ``limits`` argument of ``clear``). A limit is *past the
bound* when a bid is above ``retail`` or an ask below ``feed_in`` (those are the directions in
which a member could end up worse off than with the supplier):

- ``"allow"`` (default, as in the Quartierstrom pilot): limits are used as given; members may
  pay more than retail or sell below feed-in locally if they choose to.
- ``"clamp"``: bids are capped at ``retail`` and asks raised to ``feed_in`` before matching;
  every local price then lies in ``[feed_in, retail]`` whatever members send.
- ``"reject"``: an order past the bound raises ``LimitOutOfBounds``.

With limits within the bounds (or under ``"clamp"``) every local trade price, and every amount a
seller receives per kWh, lies in ``[feed_in, retail]``: each scheme is individually rational, so a
buyer pays at most its bid (``<= retail``) and a seller receives at least its ask (``>= feed_in``).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress, repeat
from operator import attrgetter
from typing import Final, Literal

from coordinator.market.errors import InvalidArgument, LimitOutOfBounds
from coordinator.market.types import BUY, EX_ANTE, EX_POST, SELL, SUPPLIER, Order, Tariff, TradeRow, Unfilled

LimitPolicy = Literal["allow", "clamp", "reject"]
ALLOW: Final = "allow"
CLAMP: Final = "clamp"
REJECT: Final = "reject"
LIMIT_POLICIES: Final = (ALLOW, CLAMP, REJECT)

_new = tuple.__new__
_KIND = attrgetter("kind")
_PARTY = attrgetter("party")
_ENERGY = attrgetter("energy")
_ID = attrgetter("order_id")


def check_policy(policy: str) -> None:
    if policy not in LIMIT_POLICIES:
        raise InvalidArgument(f"limit policy must be one of {', '.join(LIMIT_POLICIES)}; got {policy!r}")


def past_bound(order: Order, tariff: Tariff) -> bool:
    """A bid above retail or an ask below the feed-in tariff."""
    if order.side == BUY:
        return order.limit > tariff.retail
    return order.limit < tariff.feed_in


def out_of_bounds(order: Order, tariff: Tariff, n: int = 1) -> LimitOutOfBounds:
    """The error for ``order`` (``n``: how many orders of the interval are past a bound)."""
    if order.side == BUY:
        what = f"bid limit {order.limit} mc/kWh is above the retail price {tariff.retail}"
    else:
        what = f"ask limit {order.limit} mc/kWh is below the feed-in tariff {tariff.feed_in}"
    more = f"; {n} orders past a bound in all" if n > 1 else ""
    who = f"order {order.order_id!r} of {order.party!r}"
    return LimitOutOfBounds(f"{who}: {what} (limit policy 'reject'{more})")


def settle_bids(
    items: Iterable[tuple[Order, int]], tariff: Tariff, rows: list[TradeRow], unfilled: list[Unfilled]
) -> None:
    """Remaining demand: ``(order, remaining mWh)`` -> supplier sale, or unfilled (ex-ante)."""
    retail = tariff.retail
    fee = tariff.grid_fee
    for o, e in items:
        if e <= 0:
            continue
        if o.kind == EX_POST or o.limit >= retail:
            rows.append((o.party, SUPPLIER, e, retail, fee, o.order_id, ""))
        else:
            unfilled.append(_new(Unfilled, (o.order_id, o.party, BUY, e)))


def settle_asks(
    items: Iterable[tuple[Order, int]], tariff: Tariff, rows: list[TradeRow], unfilled: list[Unfilled]
) -> None:
    """Remaining surplus: ``(order, remaining mWh)`` -> supplier purchase, or unfilled (ex-ante)."""
    feed_in = tariff.feed_in
    for o, e in items:
        if e <= 0:
            continue
        if o.kind == EX_POST or o.limit <= feed_in:
            rows.append((SUPPLIER, o.party, e, feed_in, 0, "", o.order_id))
        else:
            unfilled.append(_new(Unfilled, (o.order_id, o.party, SELL, e)))


def settle_remaining(
    side: str,
    orders: list[Order],
    remaining: list[int] | None,
    tariff: Tariff,
    rows: list[TradeRow],
    unfilled: list[Unfilled],
) -> None:
    """Settle what is left of each order with the supplier (aligned lists, in order).

    ``remaining=None`` means every order's full energy. When none of the orders left is ex-ante
    (the usual case) the rows are built by ``zip`` at C speed.
    """
    if remaining is None:
        left = orders
        energies: Iterable[int] = map(_ENERGY, orders)
    else:
        left = list(compress(orders, remaining))
        energies = filter(None, remaining)
    if EX_ANTE in map(_KIND, left):
        items = zip(orders, map(_ENERGY, orders) if remaining is None else remaining, strict=True)
        if side == BUY:
            settle_bids(items, tariff, rows, unfilled)
        else:
            settle_asks(items, tariff, rows, unfilled)
    elif side == BUY:
        rows.extend(
            zip(
                map(_PARTY, left),
                repeat(SUPPLIER),
                energies,
                repeat(tariff.retail),
                repeat(tariff.grid_fee),
                map(_ID, left),
                repeat(""),
                strict=False,
            )
        )
    else:
        rows.extend(
            zip(
                repeat(SUPPLIER),
                map(_PARTY, left),
                energies,
                repeat(tariff.feed_in),
                repeat(0),
                repeat(""),
                map(_ID, left),
                strict=False,
            )
        )
