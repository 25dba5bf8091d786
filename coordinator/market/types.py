"""Value types of the market: orders in, trades and a clearing out. Integers only.

Units:

- energy: mWh (``int``);
- price: milli-cent per kWh, "mc/kWh" (20.75 Rp/kWh = 20_750);
- money: nano-cent, so that ``energy_mWh * price_mc_per_kWh`` is exact (1 mWh x 1 mc/kWh = 1e-9
  cent) and never needs a division.

A ``Trade`` moves ``energy`` from ``seller`` to ``buyer``. The buyer pays ``price`` per kWh, fee
included; the grid operator (``DSO``) receives ``fee`` per kWh of it and the seller the rest,
``price - fee``. Money is therefore conserved by construction: per trade the buyer pays
``energy * price`` nano-cent, the seller receives ``energy * (price - fee)`` and the dso
``energy * fee``. ``SUPPLIER`` (supplier of last resort, the retailer), ``DSO`` and ``PLATFORM`` (the
platform operator, paid fees and subscriptions outside the trades) are the pseudo-parties; members
may not use their names.

``Order``, ``Tariff`` and ``Clearing`` are frozen slotted dataclasses that validate on
construction. A clearing of 100k orders makes about 100k trades, so trades are stored as plain
tuples (``TradeRow``; the cheapest object Python has, and one the garbage collector stops
tracking) inside an immutable ``Trades`` sequence, which hands out ``Trade`` named tuples when
read. ``Trades.rows`` is the canonical form for a digest and for the ledger's trade records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import repeat
from typing import Final, Literal, NamedTuple, overload

from coordinator.market.errors import InvalidOrder, InvalidTariff

SUPPLIER: Final = "supplier"
"""Supplier of last resort (retailer): sells at retail, buys at the feed-in tariff."""
DSO: Final = "dso"
"""Grid operator: receives the grid fee of every trade."""
PLATFORM: Final = "platform"
"""The platform operator (Brooklyn Microgrid, Enosi): its fees, fixed charges and subscriptions."""
RESERVED_PARTIES: Final = frozenset({SUPPLIER, DSO, PLATFORM})

Side = Literal["buy", "sell"]
BUY: Final = "buy"
SELL: Final = "sell"

Kind = Literal["ex_post", "ex_ante"]
EX_POST: Final = "ex_post"
"""Settles energy already measured: whatever is not matched locally goes to the supplier."""
EX_ANTE: Final = "ex_ante"
"""A plan for the next interval (battery, EV): the supplier fills it only if its limit accepts."""

PRICE_MIN: Final = -10_000_000
"""Lowest accepted price or limit, mc/kWh (-100 CHF/kWh; the protocol's ``Result.price`` range)."""
PRICE_MAX: Final = 10_000_000
"""Highest accepted price or limit, mc/kWh."""
ENERGY_MAX: Final = 10**12
"""Largest order, mWh (1 GWh in one interval)."""
ID_MAX: Final = 128
"""Longest party, feeder or order id, characters."""

# Book rank: one integer per order that sorts bids first (limit descending, then energy
# descending), then asks (limit ascending, then energy descending), and within those by ``tie``,
# a 64-bit BLAKE2b hash of the order id. See ``orderbook``.
_TIE_BITS: Final = 64
_E_BITS: Final = 40 + _TIE_BITS
_ASK_BIT: Final = 1 << (_E_BITS + 26)


def tie_hash(order_id: str) -> int:
    """64-bit BLAKE2b of ``order_id``: the tie-break of equal limit and energy (stable, not seeded)."""
    return int.from_bytes(blake2b(order_id.encode(), digest_size=8).digest(), "big")


def _is_int(v: object) -> bool:
    return type(v) is int  # bool is an int subclass: refuse it


def _is_id(v: object) -> bool:
    return type(v) is str and 0 < len(v) <= ID_MAX


@dataclass(frozen=True, slots=True)
class Order:
    """One member's order for one interval.

    ``limit`` is the member's price limit in mc/kWh: the most a buyer pays (fee included) or the
    least a seller receives (after the fee). ``feeder`` names the substation feeder the meter
    sits on; trades between two orders on the same feeder pay the reduced local grid fee. ``None``
    means unknown (never local). ``order_id`` is unique within the interval.
    """

    party: str
    side: Side
    energy: int
    limit: int
    feeder: str | None
    order_id: str
    kind: Kind = EX_POST
    rank: int = field(init=False, repr=False, compare=False)
    """Book rank (derived from side, limit, energy and ``tie``): sorting by it gives book order."""
    tie: int = field(init=False, repr=False, compare=False)
    """``tie_hash(order_id)`` (derived)."""

    def __post_init__(self) -> None:
        oid = self.order_id
        if not _is_id(oid):
            raise InvalidOrder(
                f"order_id must be a non-empty string of up to {ID_MAX} characters, got {oid!r}"
            )
        where = f"order {oid!r}"
        if not _is_id(self.party):
            raise InvalidOrder(f"{where}: party must be a non-empty string of at most {ID_MAX} characters")
        if self.party in RESERVED_PARTIES:
            raise InvalidOrder(f"{where}: party {self.party!r} is reserved for the market itself")
        where = f"order {oid!r} of {self.party!r}"
        e = self.energy
        if not _is_int(e) or not 0 < e <= ENERGY_MAX:
            raise InvalidOrder(f"{where}: energy must be an integer of mWh in 1..{ENERGY_MAX}, got {e!r}")
        lim = self.limit
        if not _is_int(lim) or not PRICE_MIN <= lim <= PRICE_MAX:
            raise InvalidOrder(
                f"{where}: limit must be an integer of mc/kWh in {PRICE_MIN}..{PRICE_MAX}, got {lim!r}"
            )
        if self.feeder is not None and not _is_id(self.feeder):
            raise InvalidOrder(f"{where}: feeder must be None or a non-empty string, got {self.feeder!r}")
        if self.kind != EX_POST and self.kind != EX_ANTE:
            raise InvalidOrder(f"{where}: kind must be 'ex_post' or 'ex_ante', got {self.kind!r}")
        tie = tie_hash(oid)
        if self.side == BUY:
            rank = ((PRICE_MAX - lim) << _E_BITS) + ((ENERGY_MAX - e) << _TIE_BITS) + tie
        elif self.side == SELL:
            rank = _ASK_BIT + ((lim - PRICE_MIN) << _E_BITS) + ((ENERGY_MAX - e) << _TIE_BITS) + tie
        else:
            raise InvalidOrder(f"{where}: side must be 'buy' or 'sell', got {self.side!r}")
        object.__setattr__(self, "rank", rank)
        object.__setattr__(self, "tie", tie)


TradeRow = tuple[str, str, int, int, int, str, str]
"""A trade as a plain tuple: ``(buyer, seller, energy, price, fee, buy_order_id, sell_order_id)``."""


class Trade(NamedTuple):
    """``energy`` mWh from ``seller`` to ``buyer``; buyer pays ``price`` (fee incl.), dso gets ``fee``.

    With the supplier, the member-side order id is set and the supplier side is ``""``. Equal to
    its ``TradeRow``.
    """

    buyer: str
    seller: str
    energy: int
    price: int
    fee: int
    buy_order_id: str
    sell_order_id: str


_new = tuple.__new__


class Trades(Sequence[Trade]):
    """An immutable sequence of trades stored as ``TradeRow`` tuples; items read as ``Trade``."""

    __slots__ = ("rows",)
    rows: tuple[TradeRow, ...]

    def __init__(self, rows: tuple[TradeRow, ...] | list[TradeRow] = ()) -> None:
        object.__setattr__(self, "rows", tuple(rows))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Trades is immutable")

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, k: int) -> Trade: ...
    @overload
    def __getitem__(self, k: slice) -> Trades: ...
    def __getitem__(self, k: int | slice) -> Trade | Trades:
        if isinstance(k, slice):
            return Trades(self.rows[k])
        return _new(Trade, self.rows[k])

    def __iter__(self) -> Iterator[Trade]:
        return map(_new, repeat(Trade), self.rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Trades):
            return self.rows == other.rows
        if isinstance(other, tuple):
            return self.rows == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.rows)

    def __add__(self, other: Trades) -> Trades:
        return Trades(self.rows + other.rows)

    def __repr__(self) -> str:
        return f"Trades({list(self)!r})"


class Unfilled(NamedTuple):
    """The part of an ex-ante order that neither a member nor the supplier took."""

    order_id: str
    party: str
    side: str
    energy: int


def _price_ok(v: object) -> bool:
    return type(v) is int and PRICE_MIN <= v <= PRICE_MAX


@dataclass(frozen=True, slots=True)
class Tariff:
    """Prices of the supplier and fees of the grid operator, all mc/kWh.

    - ``feed_in``: what the supplier pays for surplus (the floor of local prices);
    - ``retail``: what a member pays the supplier, grid fee included (the ceiling);
    - ``grid_fee``: grid-use fee added to a local trade's ask;
    - ``grid_fee_local``: the reduced fee when buyer and seller sit on the same feeder;
    - ``zone_fees``: a network-fee matrix by distance or zone (RENeW Nexus, Power Ledger):
      ``(zone a, zone b, fee)`` triples, a zone being an order's feeder; a local trade between
      two listed zones (either way; a zone with itself: within it) pays that fee, others the rule
      above. A fee within a zone lies in ``0..grid_fee_local``, between zones in ``0..grid_fee``:
      never above what the two-level rule charges, so every scheme's matching (which prices a
      trade's fee by that rule) stays individually rational.

    Supplier sales carry ``fee = grid_fee`` (retail includes the network charge; the supplier keeps
    ``retail - grid_fee``); supplier purchases carry no fee. Rules:
    ``0 <= grid_fee_local <= grid_fee <= retail`` and ``feed_in <= retail``.
    """

    feed_in: int
    retail: int
    grid_fee: int
    grid_fee_local: int
    zone_fees: tuple[tuple[str, str, int], ...] = ()
    _fees: dict[tuple[str, str], int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("feed_in", "retail", "grid_fee", "grid_fee_local"):
            v = getattr(self, name)
            if not _price_ok(v):
                raise InvalidTariff(
                    f"tariff {name} must be an integer of mc/kWh in {PRICE_MIN}..{PRICE_MAX}, got {v!r}"
                )
        if self.feed_in > self.retail:
            raise InvalidTariff(f"tariff feed_in {self.feed_in} is above retail {self.retail}")
        if not 0 <= self.grid_fee_local <= self.grid_fee <= self.retail:
            raise InvalidTariff(
                "tariff fees must satisfy 0 <= grid_fee_local <= grid_fee <= retail, got "
                f"grid_fee_local={self.grid_fee_local}, grid_fee={self.grid_fee}, retail={self.retail}"
            )
        fees: dict[tuple[str, str], int] = {}
        for item in self.zone_fees:
            if not (isinstance(item, tuple) and len(item) == 3):
                raise InvalidTariff(f"tariff zone_fees: each entry is (zone, zone, fee), got {item!r}")
            a, b, f = item
            if not (type(a) is str and a and type(b) is str and b):
                raise InvalidTariff(f"tariff zone_fees: zones must be non-empty names, got {a!r}, {b!r}")
            top = self.grid_fee_local if a == b else self.grid_fee
            if type(f) is not int or not 0 <= f <= top:
                name = "grid_fee_local" if a == b else "grid_fee"
                raise InvalidTariff(
                    f"tariff zone_fees: the fee between {a!r} and {b!r} must be an integer in "
                    f"0..{name} ({top}), got {f!r}"
                )
            if (a, b) in fees:
                raise InvalidTariff(f"tariff zone_fees: {a!r} and {b!r} are given twice")
            fees[(a, b)] = fees[(b, a)] = f
        object.__setattr__(self, "_fees", fees)

    def fee(self, buyer_feeder: str | None, seller_feeder: str | None) -> int:
        """Grid fee of a local trade between orders on these feeders (zones)."""
        if self._fees and buyer_feeder is not None and seller_feeder is not None:
            f = self._fees.get((buyer_feeder, seller_feeder))
            if f is not None:
                return f
        if buyer_feeder is not None and buyer_feeder == seller_feeder:
            return self.grid_fee_local
        return self.grid_fee


@dataclass(frozen=True, slots=True)
class Clearing:
    """The outcome of one interval.

    - ``trades``: local trades between members, in the scheme's matching order;
    - ``residual``: trades with ``SUPPLIER`` (unmatched demand at retail, surplus at feed-in);
    - ``unfilled``: ex-ante remainders nobody took (the board is told not to run them);
    - ``price``: the uniform clearing price, the community price, or the volume-weighted mean
      price of the local trades (floor); ``None`` when there was no local trade.
    """

    interval: int
    scheme: str
    trades: Trades
    residual: Trades
    unfilled: tuple[Unfilled, ...]
    price: int | None

    @property
    def traded(self) -> int:
        """Local energy traded between members, mWh."""
        return sum(r[2] for r in self.trades.rows)

    @property
    def grid_imp(self) -> int:
        """Energy bought from the supplier, mWh."""
        return sum(r[2] for r in self.residual.rows if r[1] == SUPPLIER)

    @property
    def grid_exp(self) -> int:
        """Energy sold to the supplier, mWh."""
        return sum(r[2] for r in self.residual.rows if r[0] == SUPPLIER)

    @property
    def n_trades(self) -> int:
        return len(self.trades)

    def all_trades(self) -> Trades:
        """Local trades, then the supplier's."""
        return self.trades + self.residual

    def canonical(
        self,
    ) -> tuple[int, str, int | None, tuple[TradeRow, ...], tuple[TradeRow, ...], tuple[Unfilled, ...]]:
        """Plain nested tuples of ints and strings, in a fixed order: hash or encode this for a digest."""
        return (self.interval, self.scheme, self.price, self.trades.rows, self.residual.rows, self.unfilled)
