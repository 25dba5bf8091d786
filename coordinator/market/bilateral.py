"""Preferred producers: bilateral contracts between a consumer and a producer.

Two price models:

- **Fixed** (Vandebron): the consumer picks a producer, they agree ``price`` (mc/kWh, what the
  producer receives) for a term ``[start, end)``; the consumer also pays a ``subscription`` per
  billing period to the platform operator or to the producer (``subscription_to``;
  ``subscription_charges``).
- **Wholesale-indexed** (Bolt): the producer receives the wholesale price of the interval plus
  ``markup``, clamped to ``[floor, cap]``. By default ``floor = feed_in`` and ``cap = retail -
  grid_fee``, so the consumer never pays more than retail nor the producer less than feed-in.
  The series is passed in as a mapping ``interval start -> mc/kWh``.

Per interval, with the contracts active at it (``start <= interval < end``; a consumer may have at
most one):

- **Allocation.** Each producer's energy (its sell orders) is shared among the consumers it has
  contracts with, pro rata to their demand (their buy orders), never above a consumer's demand
  nor the producer's supply; integer shares by the largest remainder method, so no mWh is lost.
  A consumer's share is then filled from its buy orders and the producer's sell orders, each in
  ``order_id`` order.
- **Price.** The consumer pays the contract price plus the grid fee of the pair (``grid_fee_local``
  on the same feeder, else ``grid_fee``); the dso gets the fee, the producer the contract price.
- **Limits.** A buy order takes part only if its limit is at least contract price plus
  ``grid_fee``; a producer's sell order only if its limit is at most the lowest price among the
  producer's active contracts. Orders that do not take part trade with the supplier.
- **Rest.** Remaining demand from the supplier at retail, surplus to it at feed-in
  (``last_resort``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

from coordinator.market.allocation import pro_rata_capped
from coordinator.market.errors import InvalidContract, MissingPrice
from coordinator.market.last_resort import ALLOW, settle_remaining
from coordinator.market.orderbook import sides_by_id
from coordinator.market.types import (
    BUY,
    ID_MAX,
    PLATFORM,
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

SCHEME = "bilateral"
SUBSCRIPTION_PAYEES = ("platform", "producer")


def _is_id(v: object) -> bool:
    return type(v) is str and 0 < len(v) <= ID_MAX


def _is_price(v: object) -> bool:
    return type(v) is int and PRICE_MIN <= v <= PRICE_MAX


@dataclass(frozen=True, slots=True)
class Contract:
    """A consumer's contract with one producer over ``[start, end)`` (interval starts, Unix s).

    Exactly one of ``price`` (fixed, mc/kWh) and ``markup`` (wholesale-indexed) is set.
    ``subscription`` is in nano-cent per billing period, paid to ``subscription_to``: ``"platform"``
    (the platform operator, ``PLATFORM``) or ``"producer"``.
    """

    contract_id: str
    consumer: str
    producer: str
    start: int
    end: int
    price: int | None = None
    markup: int | None = None
    floor: int | None = None
    cap: int | None = None
    subscription: int = 0
    subscription_to: str = "platform"

    def __post_init__(self) -> None:
        cid = self.contract_id
        if not _is_id(cid):
            raise InvalidContract(f"contract_id must be a non-empty string, got {cid!r}")
        where = f"contract {cid!r}"
        for name in ("consumer", "producer"):
            v = getattr(self, name)
            if not _is_id(v) or v in RESERVED_PARTIES:
                raise InvalidContract(f"{where}: {name} must be a member party id, got {v!r}")
        if self.consumer == self.producer:
            raise InvalidContract(f"{where}: consumer and producer are the same party {self.consumer!r}")
        if type(self.start) is not int or type(self.end) is not int or not 0 <= self.start < self.end:
            raise InvalidContract(
                f"{where}: needs integer times 0 <= start < end, got {self.start!r}, {self.end!r}"
            )
        if (self.price is None) == (self.markup is None):
            raise InvalidContract(f"{where}: set exactly one of price (fixed) and markup (wholesale-indexed)")
        for name in ("price", "markup", "floor", "cap"):
            v = getattr(self, name)
            if v is not None and not _is_price(v):
                raise InvalidContract(f"{where}: {name} must be an integer of mc/kWh, got {v!r}")
        if self.floor is not None and self.cap is not None and self.floor > self.cap:
            raise InvalidContract(f"{where}: floor {self.floor} is above cap {self.cap}")
        if type(self.subscription) is not int or self.subscription < 0:
            raise InvalidContract(f"{where}: subscription must be a non-negative integer of nano-cent")
        if self.subscription_to not in SUBSCRIPTION_PAYEES:
            raise InvalidContract(
                f"{where}: subscription_to must be one of {', '.join(SUBSCRIPTION_PAYEES)}, got "
                f"{self.subscription_to!r}"
            )

    @property
    def payee(self) -> str:
        """The party its subscription is paid to."""
        return PLATFORM if self.subscription_to == "platform" else self.producer

    def active(self, interval: int) -> bool:
        return self.start <= interval < self.end

    def energy_price(self, interval: int, tariff: Tariff, wholesale: Mapping[int, int] | None = None) -> int:
        """What the producer receives per kWh in ``interval`` (mc/kWh), before the grid fee."""
        if self.price is not None:
            return self.price
        if wholesale is None or interval not in wholesale:
            raise MissingPrice(
                f"contract {self.contract_id!r} is wholesale-indexed but no price for interval {interval}"
            )
        w = wholesale[interval]
        if not _is_price(w):
            raise MissingPrice(
                f"wholesale price for interval {interval} must be an integer of mc/kWh, got {w!r}"
            )
        markup = self.markup if self.markup is not None else 0  # set whenever price is None
        lo = self.floor if self.floor is not None else tariff.feed_in
        hi = self.cap if self.cap is not None else tariff.retail - tariff.grid_fee
        return max(lo, min(hi, w + markup))


class Charge(NamedTuple):
    """A fixed payment outside the energy trades, nano-cent."""

    payer: str
    payee: str
    amount: int
    reason: str


def subscription_charges(
    contracts: Iterable[Contract], period_start: int, period_end: int
) -> tuple[Charge, ...]:
    """Subscriptions of every contract in force during ``[period_start, period_end)``, by contract id.

    Each is paid once per billing period by the consumer to the contract's payee (the platform
    operator or the producer).
    """
    if not period_start < period_end:
        raise InvalidContract(f"billing period needs start < end, got {period_start}, {period_end}")
    return tuple(
        Charge(c.consumer, c.payee, c.subscription, f"subscription {c.contract_id}")
        for c in sorted(contracts, key=attrgetter("contract_id"))
        if c.subscription and c.start < period_end and period_start < c.end
    )


def active_contracts(contracts: Sequence[Contract], interval: int) -> list[Contract]:
    """The contracts in force at ``interval``, by contract id; one per consumer at most."""
    ids: set[str] = set()
    by_consumer: dict[str, str] = {}
    out = []
    for c in sorted(contracts, key=attrgetter("contract_id")):
        if not isinstance(c, Contract):
            raise InvalidContract(f"not a Contract: {type(c).__name__}")
        if c.contract_id in ids:
            raise InvalidContract(f"contract id {c.contract_id!r} used twice")
        ids.add(c.contract_id)
        if c.active(interval):
            if c.consumer in by_consumer:
                raise InvalidContract(
                    f"consumer {c.consumer!r} has two contracts active at {interval}: "
                    f"{by_consumer[c.consumer]!r} and {c.contract_id!r}"
                )
            by_consumer[c.consumer] = c.contract_id
            out.append(c)
    return out


def bilateral(
    interval: int,
    orders: Iterable[Order],
    tariff: Tariff,
    contracts: Sequence[Contract],
    wholesale: Mapping[int, int] | None = None,
    limits: str = ALLOW,
) -> Clearing:
    """Allocate producers' energy to their contracted consumers for one interval."""
    active = active_contracts(contracts, interval)
    buys, sells = sides_by_id(orders, tariff, limits)
    b_rem = [o.energy for o in buys]
    s_rem = [o.energy for o in sells]
    b_of: dict[str, list[int]] = {}
    for k, o in enumerate(buys):
        b_of.setdefault(o.party, []).append(k)
    s_of: dict[str, list[int]] = {}
    for k, o in enumerate(sells):
        s_of.setdefault(o.party, []).append(k)

    by_producer: dict[str, list[tuple[Contract, int]]] = {}
    for c in active:
        by_producer.setdefault(c.producer, []).append((c, c.energy_price(interval, tariff, wholesale)))
    gf = tariff.grid_fee
    rows: list[TradeRow] = []
    for producer in sorted(by_producer):
        deals = sorted(by_producer[producer], key=lambda d: d[0].consumer)
        lowest = min(p for _, p in deals)
        s_idx = [k for k in s_of.get(producer, ()) if sells[k].limit <= lowest]
        supply = sum(s_rem[k] for k in s_idx)
        b_idx = [[k for k in b_of.get(c.consumer, ()) if buys[k].limit >= p + gf] for c, p in deals]
        demand = [sum(b_rem[k] for k in ks) for ks in b_idx]
        shares = pro_rata_capped(supply, demand)
        si = 0
        for (_c, price), ks, x in zip(deals, b_idx, shares, strict=True):
            for k in ks:
                while x and b_rem[k]:
                    while not s_rem[s_idx[si]]:
                        si += 1
                    ksell = s_idx[si]
                    q = min(x, b_rem[k], s_rem[ksell])
                    b = buys[k]
                    s = sells[ksell]
                    fee = tariff.fee(b.feeder, s.feeder)
                    rows.append((b.party, s.party, q, price + fee, fee, b.order_id, s.order_id))
                    b_rem[k] -= q
                    s_rem[ksell] -= q
                    x -= q
    res: list[TradeRow] = []
    unf: list[Unfilled] = []
    settle_remaining(BUY, buys, b_rem, tariff, res, unf)
    settle_remaining(SELL, sells, s_rem, tariff, res, unf)
    vol = sum(r[2] for r in rows)
    mean = sum(r[2] * r[3] for r in rows) // vol if vol else None
    return Clearing(interval, SCHEME, Trades(rows), Trades(res), tuple(unf), mean)
