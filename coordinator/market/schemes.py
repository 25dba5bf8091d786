"""``clear``: one pure function that clears an interval with any scheme.

Schemes (``SCHEMES``):

- ``"pairwise"``, ``"uniform"``, ``"pay_as_bid"``: double auction (``double_auction``);
- ``"self_consumption"``: collective self-consumption with allocation keys (``self_consumption``);
- ``"bilateral"``: preferred-producer contracts, fixed or wholesale-indexed (``bilateral``);
- ``"net_metering"``: peer-to-grid, no local trade: every member's position settles with the
  supplier (imports at retail, exports at feed-in); billing sets a period's export against its
  import (``billing.charges``: the net-metering credit).

A tariff's network-fee matrix (``Tariff.zone_fees``) applies in every scheme: the double auction
matches by the two-level fee rule and charges each trade the matrix's fee for its zones (never
more than the rule's: the seller receives at least what it matched at).

Every scheme settles what is left with the supplier of last resort (``last_resort``) and applies
the member-limit policy ``limits`` (``"allow"``, ``"clamp"`` or ``"reject"``). Options that belong
to one scheme (``sharing``; ``contracts`` and ``wholesale``) are refused by the others, so a
misconfigured interval loop fails loudly instead of silently ignoring them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Final

from coordinator.market.bilateral import SCHEME as BILATERAL
from coordinator.market.bilateral import Contract, bilateral
from coordinator.market.double_auction import PAIRWISE, PAY_AS_BID, RULES, UNIFORM, double_auction
from coordinator.market.errors import InvalidArgument, UnknownScheme
from coordinator.market.last_resort import ALLOW, check_policy, settle_remaining
from coordinator.market.orderbook import sides_by_id
from coordinator.market.self_consumption import SCHEME as SELF_CONSUMPTION
from coordinator.market.self_consumption import Sharing, self_consumption
from coordinator.market.types import BUY, SELL, Clearing, Order, Tariff, TradeRow, Trades, Unfilled

NET_METERING: Final = "net_metering"
SCHEMES: Final = (PAIRWISE, UNIFORM, PAY_AS_BID, SELF_CONSUMPTION, BILATERAL, NET_METERING)
INTERVAL_MAX: Final = 2**40


def clear(
    scheme: str,
    interval: int,
    orders: Iterable[Order],
    tariff: Tariff,
    *,
    limits: str = ALLOW,
    sharing: Sharing | None = None,
    contracts: Sequence[Contract] | None = None,
    wholesale: Mapping[int, int] | None = None,
) -> Clearing:
    """Clear ``orders`` of ``interval`` (start, Unix s) under ``scheme``; pure, deterministic.

    ``sharing`` is for ``"self_consumption"`` (default: dynamic keys, default community price);
    ``contracts`` (required) and ``wholesale`` for ``"bilateral"``.
    """
    if scheme not in SCHEMES:
        raise UnknownScheme(f"unknown market scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if type(interval) is not int or not 0 <= interval <= INTERVAL_MAX:
        raise InvalidArgument(
            f"interval must be an integer start time in 0..{INTERVAL_MAX}, got {interval!r}"
        )
    if not isinstance(tariff, Tariff):
        raise InvalidArgument(f"tariff must be a Tariff, got {type(tariff).__name__}")
    check_policy(limits)
    if sharing is not None and scheme != SELF_CONSUMPTION:
        raise InvalidArgument(f"sharing applies to the self_consumption scheme only, not {scheme!r}")
    if (contracts is not None or wholesale is not None) and scheme != BILATERAL:
        raise InvalidArgument(f"contracts and wholesale apply to the bilateral scheme only, not {scheme!r}")
    if scheme in RULES:
        if not tariff.zone_fees:
            return double_auction(interval, orders, tariff, scheme, limits)
        book = list(orders)
        c = double_auction(interval, book, tariff, scheme, limits)
        feeder = {o.order_id: o.feeder for o in book}
        rows = [
            (b, s, e, p, tariff.fee(feeder[bid], feeder[sid]), bid, sid)
            for b, s, e, p, _, bid, sid in c.trades.rows
        ]
        return replace(c, trades=Trades(rows))
    if scheme == NET_METERING:
        buys, sells = sides_by_id(orders, tariff, limits)
        res: list[TradeRow] = []
        unf: list[Unfilled] = []
        settle_remaining(BUY, buys, None, tariff, res, unf)
        settle_remaining(SELL, sells, None, tariff, res, unf)
        return Clearing(interval, NET_METERING, Trades(()), Trades(res), tuple(unf), None)
    if scheme == SELF_CONSUMPTION:
        return self_consumption(interval, orders, tariff, sharing, limits)
    if contracts is None:
        raise InvalidArgument("the bilateral scheme needs contracts (an empty sequence if there are none)")
    return bilateral(interval, orders, tariff, contracts, wholesale, limits)
