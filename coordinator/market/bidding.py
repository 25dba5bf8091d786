"""Orders from member preferences, measurements, forecasts and storage state.

Limits: a member sets a minimum sell price and a maximum buy price (mc/kWh). Left unset they are
anchored on the tariff, as in Quartierstrom: sell at no less than ``feed_in`` (what the supplier
would pay), buy at no more than ``retail`` (what the supplier would charge). Members may set them
past those anchors; ``clear``'s limit policy decides what happens then.

- **Ex post** (sandbox style, ``ex_post_orders``): the board's measured import and export in the
  last interval become orders that settle the energy already delivered. By default the position is
  netted (one buy or one sell order); ``net=False`` keeps import and export apart.
- **Ex ante** (``forecast_orders``): a forecast net energy for the next interval, same limits.
- **Storage** (``storage_orders``, batteries and EVs): from state of charge, power limits and a
  target by a deadline:

  - *must* charge: the energy that cannot wait any longer, i.e. what is still missing for the
    target beyond what the remaining intervals before the deadline can charge at full power.
    Bid at ``retail``, so the supplier fills whatever members do not: the target is met.
  - *may* charge: the rest of the headroom this interval at ``charge_limit`` (default
    ``feed_in + grid_fee_local``: soak up local surplus that would otherwise go out at feed-in).
  - *may* discharge: what is above the reserve (``max(min_soc, target)`` before the deadline,
    ``min_soc`` after it) at ``discharge_limit`` (default halfway between feed-in and retail).

  ``charge_limit`` must be below ``discharge_limit`` so a device never trades with itself. All
  storage orders are ex ante: only the supplier's fallback for the *must* part is guaranteed.

Energy from power: ``mWh = W * s / 3.6`` (1 mWh = 3.6 J), rounded down.

Order ids: ``"<interval>:<party>:<tag>"`` for household positions and
``"<interval>:<party>:<device>:<tag>"`` for storage, unique per interval as long as device ids are
unique per party.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.market.errors import InvalidPreference
from coordinator.market.types import (
    BUY,
    ENERGY_MAX,
    EX_ANTE,
    EX_POST,
    ID_MAX,
    PRICE_MAX,
    PRICE_MIN,
    SELL,
    Kind,
    Order,
    Side,
    Tariff,
)


def _check_int(where: str, name: str, v: object, lo: int, hi: int) -> None:
    if type(v) is not int or not lo <= v <= hi:
        raise InvalidPreference(f"{where}: {name} must be an integer in {lo}..{hi}, got {v!r}")


def _check_id(where: str, name: str, v: object, optional: bool = False) -> None:
    if optional and v is None:
        return
    if type(v) is not str or not 0 < len(v) <= ID_MAX:
        raise InvalidPreference(f"{where}: {name} must be a non-empty string, got {v!r}")


def energy_mwh(power_w: int, seconds: int) -> int:
    """Energy of ``power_w`` watts over ``seconds``, mWh, rounded down (1 mWh = 3.6 J)."""
    return power_w * seconds * 10 // 36


@dataclass(frozen=True, slots=True)
class Preferences:
    """A member's price limits (mc/kWh); ``None``: anchored on feed-in / retail."""

    party: str
    feeder: str | None = None
    min_sell: int | None = None
    max_buy: int | None = None

    def __post_init__(self) -> None:
        where = f"preferences of {self.party!r}"
        _check_id(where, "party", self.party)
        _check_id(where, "feeder", self.feeder, optional=True)
        for name in ("min_sell", "max_buy"):
            v = getattr(self, name)
            if v is not None:
                _check_int(where, name, v, PRICE_MIN, PRICE_MAX)

    def sell_limit(self, tariff: Tariff) -> int:
        return self.min_sell if self.min_sell is not None else tariff.feed_in

    def buy_limit(self, tariff: Tariff) -> int:
        return self.max_buy if self.max_buy is not None else tariff.retail


def _order(
    interval: int, prefs: Preferences, side: Side, energy: int, limit: int, tag: str, kind: Kind
) -> Order:
    return Order(prefs.party, side, energy, limit, prefs.feeder, f"{interval}:{prefs.party}:{tag}", kind)


def _position(
    interval: int, prefs: Preferences, tariff: Tariff, net: int, kind: Kind, tag: str
) -> tuple[Order, ...]:
    if net > 0:
        return (_order(interval, prefs, BUY, net, prefs.buy_limit(tariff), tag + "buy", kind),)
    if net < 0:
        return (_order(interval, prefs, SELL, -net, prefs.sell_limit(tariff), tag + "sell", kind),)
    return ()


def ex_post_orders(
    interval: int, prefs: Preferences, tariff: Tariff, imported: int, exported: int, *, net: bool = True
) -> tuple[Order, ...]:
    """Orders that settle the measured import/export (mWh) of the last interval."""
    where = f"measurement of {prefs.party!r} at {interval}"
    _check_int(where, "imported", imported, 0, ENERGY_MAX)
    _check_int(where, "exported", exported, 0, ENERGY_MAX)
    if net:
        return _position(interval, prefs, tariff, imported - exported, EX_POST, "")
    return _position(interval, prefs, tariff, imported, EX_POST, "") + _position(
        interval, prefs, tariff, -exported, EX_POST, ""
    )


def forecast_orders(interval: int, prefs: Preferences, tariff: Tariff, net: int) -> tuple[Order, ...]:
    """Ex-ante orders for a forecast net energy of the next interval (mWh, import > 0, export < 0)."""
    _check_int(f"forecast of {prefs.party!r} at {interval}", "net", net, -ENERGY_MAX, ENERGY_MAX)
    return _position(interval, prefs, tariff, net, EX_ANTE, "fc-")


@dataclass(frozen=True, slots=True)
class Storage:
    """A battery or an EV (``max_discharge_w=0`` without vehicle-to-grid). Energy mWh, power W."""

    party: str
    device: str
    capacity: int
    soc: int
    max_charge_w: int
    max_discharge_w: int = 0
    target_soc: int = 0
    deadline: int | None = None
    min_soc: int = 0
    charge_limit: int | None = None
    discharge_limit: int | None = None
    feeder: str | None = None

    def __post_init__(self) -> None:
        where = f"storage {self.device!r} of {self.party!r}"
        _check_id(where, "party", self.party)
        _check_id(where, "device", self.device)
        _check_id(where, "feeder", self.feeder, optional=True)
        _check_int(where, "capacity", self.capacity, 0, ENERGY_MAX)
        _check_int(where, "min_soc", self.min_soc, 0, self.capacity)
        _check_int(where, "soc", self.soc, 0, self.capacity)
        _check_int(where, "target_soc", self.target_soc, 0, self.capacity)
        _check_int(where, "max_charge_w", self.max_charge_w, 0, 10**9)
        _check_int(where, "max_discharge_w", self.max_discharge_w, 0, 10**9)
        if self.deadline is not None:
            _check_int(where, "deadline", self.deadline, 0, 2**40)
        for name in ("charge_limit", "discharge_limit"):
            v = getattr(self, name)
            if v is not None:
                _check_int(where, name, v, PRICE_MIN, PRICE_MAX)

    def limits(self, tariff: Tariff) -> tuple[int, int]:
        """``(charge_limit, discharge_limit)`` with the defaults filled in."""
        c = self.charge_limit if self.charge_limit is not None else tariff.feed_in + tariff.grid_fee_local
        d = (
            self.discharge_limit
            if self.discharge_limit is not None
            else (tariff.feed_in + tariff.retail) // 2
        )
        if c >= d:
            raise InvalidPreference(
                f"storage {self.device!r} of {self.party!r}: charge limit {c} must be below discharge {d}"
            )
        return c, d


def storage_orders(interval: int, length: int, storage: Storage, tariff: Tariff) -> tuple[Order, ...]:
    """Ex-ante orders of a battery or EV for the interval ``[interval, interval + length)``."""
    _check_int(f"storage {storage.device!r}", "length", length, 1, 86_400)
    charge_limit, discharge_limit = storage.limits(tariff)
    e_in = energy_mwh(storage.max_charge_w, length)
    e_out = energy_mwh(storage.max_discharge_w, length)
    room = min(e_in, storage.capacity - storage.soc)
    if storage.deadline is not None and storage.deadline > interval:
        left = -(-(storage.deadline - interval) // length)  # intervals before the deadline, this one included
        missing = max(0, storage.target_soc - storage.soc)
        must = min(room, max(0, missing - (left - 1) * e_in))
        reserve = max(storage.min_soc, storage.target_soc)
    else:
        must = 0
        reserve = storage.min_soc
    may = room - must
    out_e = min(e_out, max(0, storage.soc - reserve))
    prefix = f"{interval}:{storage.party}:{storage.device}:"

    def order(side: Side, energy: int, limit: int, tag: str) -> Order:
        return Order(storage.party, side, energy, limit, storage.feeder, prefix + tag, EX_ANTE)

    orders = []
    if must:
        orders.append(order(BUY, must, tariff.retail, "must"))
    if may:
        orders.append(order(BUY, may, charge_limit, "charge"))
    if out_e:
        orders.append(order(SELL, out_e, discharge_limit, "discharge"))
    return tuple(orders)
