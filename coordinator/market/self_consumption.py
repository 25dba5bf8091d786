"""Collective self-consumption (Partagélec): a producer's surplus shared among members by keys.

Per interval, sell orders are producers' surplus and buy orders members' consumption.

- **Allocation keys.** Static keys: fixed shares per member in basis points (10_000 = 100%), at
  most 10_000 in all; the unkeyed part is not shared. Dynamic keys (``keys=None``): pro rata to
  each member's consumption in the interval. Integer shares use the largest remainder method
  (``allocation``), so no mWh is lost; ties go to the member whose party id sorts first.
- **Caps.** A member never receives more than its consumption. With static keys, a share above
  what the member consumes is not passed on to others: it stays with the producer (and goes to
  the supplier). With several producers, each producer's surplus (in ``order_id`` order) is split in
  turn against what members still consume.
- **Price.** Shared energy is priced at ``community_price`` (mc/kWh, what the member pays, fee
  included; default halfway between ``feed_in + grid_fee_local`` and ``retail``, rounded down and
  kept within the bounds); it must lie in ``[feed_in, retail]``. The trade's fee follows the
  feeder rule (``grid_fee_local`` on the same feeder, else ``grid_fee``); the producer receives
  ``community_price - fee``.
- **Limits.** A member's limit still protects it: a buy order takes part only if its limit is at
  least ``community_price``; a sell order only if its limit is at most ``community_price -
  grid_fee`` (the largest fee it could pay). Orders that do not take part trade with the supplier.
- **Rest.** What no member consumes is sold to the supplier at ``feed_in``; remaining demand is
  bought from the supplier at ``retail`` (``last_resort``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coordinator.market.allocation import fill_in_order, largest_remainder, pro_rata_capped
from coordinator.market.errors import InvalidSharing
from coordinator.market.last_resort import ALLOW, settle_remaining
from coordinator.market.orderbook import sides_by_id
from coordinator.market.types import (
    BUY,
    ID_MAX,
    PRICE_MAX,
    PRICE_MIN,
    RESERVED_PARTIES,
    SELL,
    Clearing,
    Order,
    Tariff,
    TradeRow,
    Trades,
    Unfilled,
)

SCHEME = "self_consumption"
FULL = 10_000
"""100% in basis points."""


@dataclass(frozen=True, slots=True)
class Sharing:
    """How a collective shares: static ``keys`` (party -> basis points) or dynamic (``None``)."""

    keys: Mapping[str, int] | None = None
    community_price: int | None = None

    def __post_init__(self) -> None:
        if self.keys is not None:
            if not isinstance(self.keys, Mapping):
                raise InvalidSharing(
                    f"keys must map party ids to basis points, got {type(self.keys).__name__}"
                )
            total = 0
            for party, bps in self.keys.items():
                if type(party) is not str or not 0 < len(party) <= ID_MAX or party in RESERVED_PARTIES:
                    raise InvalidSharing(f"allocation key for {party!r}: not a member party id")
                if type(bps) is not int or not 0 <= bps <= FULL:
                    raise InvalidSharing(
                        f"allocation key of {party!r} must be basis points in 0..{FULL}, got {bps!r}"
                    )
                total += bps
            if total > FULL:
                raise InvalidSharing(
                    f"allocation keys add up to {total} basis points, more than {FULL} (100%)"
                )
        p = self.community_price
        if p is not None and (type(p) is not int or not PRICE_MIN <= p <= PRICE_MAX):
            raise InvalidSharing(f"community_price must be an integer of mc/kWh, got {p!r}")

    def price(self, tariff: Tariff) -> int:
        """The community price under ``tariff``; raises ``InvalidSharing`` outside ``[feed_in, retail]``."""
        p = self.community_price
        if p is None:
            mid = (tariff.feed_in + tariff.grid_fee_local + tariff.retail) // 2
            return max(tariff.feed_in, min(tariff.retail, mid))
        if not tariff.feed_in <= p <= tariff.retail:
            raise InvalidSharing(
                f"community_price {p} is outside the tariff bounds [{tariff.feed_in}, {tariff.retail}]"
            )
        return p


def self_consumption(
    interval: int,
    orders: Iterable[Order],
    tariff: Tariff,
    sharing: Sharing | None = None,
    limits: str = ALLOW,
) -> Clearing:
    """Share producers' surplus among members for one interval (see the module docstring)."""
    sharing = sharing if sharing is not None else Sharing()
    price = sharing.price(tariff)
    buys, sells = sides_by_id(orders, tariff, limits)
    b_rem = [o.energy for o in buys]
    s_rem = [o.energy for o in sells]

    # members taking part: their buy orders (positions in ``buys``), in party then order_id order
    member_orders: dict[str, list[int]] = {}
    for k, o in enumerate(buys):
        if o.limit >= price:
            member_orders.setdefault(o.party, []).append(k)
    seller_ok = price - tariff.grid_fee
    keys = sharing.keys
    parties = sorted(keys) if keys is not None else sorted(member_orders)
    rows: list[TradeRow] = []
    for ks, s in enumerate(sells):
        if s.limit > seller_ok or not parties:
            continue
        supply = s.energy
        demand = [sum(b_rem[k] for k in member_orders.get(p, ())) for p in parties]
        if keys is not None:
            weights = [keys[p] for p in parties]
            shares = largest_remainder(supply, [*weights, FULL - sum(weights)])[:-1]
            shares = [min(x, d) for x, d in zip(shares, demand, strict=True)]
        else:
            shares = pro_rata_capped(supply, demand)
        for p, x in zip(parties, shares, strict=True):
            if not x:
                continue
            ks_orders = member_orders[p]
            for k, q in zip(ks_orders, fill_in_order(x, [b_rem[k] for k in ks_orders]), strict=True):
                if q:
                    b = buys[k]
                    rows.append(
                        (b.party, s.party, q, price, tariff.fee(b.feeder, s.feeder), b.order_id, s.order_id)
                    )
                    b_rem[k] -= q
        s_rem[ks] -= sum(shares)
    res: list[TradeRow] = []
    unf: list[Unfilled] = []
    settle_remaining(BUY, buys, b_rem, tariff, res, unf)
    settle_remaining(SELL, sells, s_rem, tariff, res, unf)
    return Clearing(interval, SCHEME, Trades(rows), Trades(res), tuple(unf), price if rows else None)
