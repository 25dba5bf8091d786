"""Members and their preferences, typed and validated once when they are read.

A member's preferences are stored as a JSON object in ``members.prefs``; every key is optional:

- ``min_sell`` / ``max_buy``: the member's price limits in the market (mc/kWh);
- ``subscription_per_day``: what its subscription costs per local day (nano-cent);
- ``storage``: a battery ``{"capacity_mwh": 10000000, "max_charge_w": 3300, "max_discharge_w": 3300,
  "min_soc": 100}`` (``min_soc`` per-mille) or a market EV ``{"kind": "ev", "capacity_mwh":
  60000000, "max_charge_w": 11000, "phases": 3, "target_soc": 800, "departure": "07:00"}``, which
  charges to its target by the next departure (UTC) and never discharges;
- ``ev``: an integrator home's EV beside its battery: ``{"max_charge_w": 11000, "phases": 3,
  "need_mwh": 20000000, "arrive": "17:00", "departure": "07:00"}`` (UTC);
- ``deferrable``: a load on a relay that may be postponed: ``{"w": 3000, "relay": 0, "hours": [18,
  23]}`` (on from 18:00 to 23:00 UTC; without ``hours``, on all day);
- ``pv``: ``{"kwp": 8}``: rooftop PV, whose export may be offered to the flexibility market;
- ``flex``: the member's cost of a change per device, mc/kWh (``pv``, ``battery``, ``ev``, ``load``;
  defaults in :class:`coordinator.delivery.assets.Costs`) and ``price``, what it asks per kWh in
  the flexibility market (default: its costs);
- ``integrator``: ``{"horizon": 16}``: the home's battery and EV follow the integrator plan
  (:mod:`coordinator.delivery.integrator`) instead of the market.

:meth:`MemberPrefs.parse` checks types, ranges and keys and raises :class:`MemberError` naming the
member and the field; :meth:`MemberPrefs.to_json` gives the stored object back (values equal to
their defaults left out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.market import Preferences
from coordinator.market.types import ENERGY_MAX, PRICE_MAX, PRICE_MIN

ROLES = ("consumer", "prosumer", "storage", "ev", "producer")
BATTERY = "battery"
EV = "ev"
RELAYS = 8  # a board order's relay_mask is 8 bits: relays 0..7
POWER_MAX = 10**9  # W, as the market's storage allows
HORIZON_MAX = 96  # intervals an integrator plan looks ahead at most (a day of 15 minutes)
MONEY_MAX = 10**15  # nano-cent per day
KWP_MAX = 10**6
PER_MILLE = 1000
DAY = 86_400


class MemberError(CoordinatorError):
    """A member's stored or given preferences are not valid; the message names member and field."""


def hhmm(seconds: int) -> str:
    """An "HH:MM" time of day from seconds after midnight."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


class _Reader:
    """Reads one JSON table of a member's preferences, key by key; ``done`` refuses what is left."""

    def __init__(self, member: str, where: str, data: object) -> None:
        self.member = member
        self.where = where
        if not isinstance(data, Mapping):
            raise MemberError(
                f"member {member!r} {where or 'prefs'} must be a table (JSON object), got {data!r}"
            )
        self.left = dict(data)

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, what: str, value: object) -> MemberError:
        return MemberError(f"member {self.member!r} {self._name(key)} must be {what}, got {value!r}")

    def has(self, key: str) -> bool:
        return key in self.left

    def integer(self, key: str, lo: int, hi: int, default: int | None = None) -> int:
        """An integer in ``lo..hi``; ``default`` when absent (None: the key is required)."""
        if key not in self.left:
            if default is None:
                raise MemberError(f"member {self.member!r} {self._name(key)} is missing")
            return default
        v = self.left.pop(key)
        if lo in (0, 1) and hi > 10_000:  # a magnitude: name the bound it broke
            high = type(v) is int and v > hi
            what = f"an integer <= {hi}" if high else ("an integer > 0" if lo else "an integer >= 0")
        else:
            what = f"an integer in {lo}..{hi}"
        if type(v) is not int or not lo <= v <= hi:
            raise self.fail(key, what, v)
        return v

    def optional_int(self, key: str, lo: int, hi: int) -> int | None:
        return self.integer(key, lo, hi) if key in self.left else None

    def time(self, key: str, default: int | None = None) -> int:
        """Seconds after midnight of an "HH:MM" time of day (UTC)."""
        if key not in self.left:
            if default is None:
                raise MemberError(f"member {self.member!r} {self._name(key)} is missing")
            return default
        v = self.left.pop(key)
        parts = v.split(":") if isinstance(v, str) else []
        if len(parts) != 2 or not all(p.isdigit() and 1 <= len(p) <= 2 for p in parts):
            raise self.fail(key, 'a time "HH:MM"', v)
        hh, mm = int(parts[0]), int(parts[1])
        if not (hh < 24 and mm < 60):
            raise self.fail(key, 'a time "HH:MM"', v)
        return hh * 3600 + mm * 60

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        v = self.left.pop(key, default)
        if v not in options:
            raise self.fail(key, " or ".join(repr(o) for o in options), v)
        return str(v)

    def table(self, key: str) -> _Reader | None:
        """The nested table ``key`` (None when absent)."""
        if key not in self.left:
            return None
        return _Reader(self.member, self._name(key), self.left.pop(key))

    def done(self, known: tuple[str, ...], what: str = "") -> None:
        if self.left:
            key = sorted(self.left)[0]
            where = self.where or "prefs"
            raise MemberError(
                f"member {self.member!r} {where} has an unknown key {key!r}{what} (known: {', '.join(known)})"
            )


def _omit(d: dict[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and defaults.get(k, _NONE) != v}


_NONE = object()


@dataclass(frozen=True)
class StoragePrefs:
    """A market-cleared battery, or a market EV (``kind`` ``"ev"``) that charges to ``target_soc``
    by ``departure`` and never discharges. Energy mWh, power W, states of charge per-mille, times in
    seconds after midnight (UTC)."""

    capacity_mwh: int
    max_charge_w: int
    max_discharge_w: int = 0  # a battery's
    min_soc: int = 0  # a battery's reserve
    kind: str = BATTERY
    phases: int = 1  # an EV's
    target_soc: int = PER_MILLE  # an EV's
    departure: int | None = None  # an EV's; None: no deadline

    @property
    def is_ev(self) -> bool:
        return self.kind == EV

    BATTERY_KEYS = ("capacity_mwh", "max_charge_w", "max_discharge_w", "min_soc", "kind")
    EV_KEYS = ("kind", "capacity_mwh", "max_charge_w", "phases", "target_soc", "departure")

    @classmethod
    def _parse(cls, r: _Reader) -> StoragePrefs:
        kind = r.choice("kind", (BATTERY, EV), BATTERY)
        cap = r.integer("capacity_mwh", 1, ENERGY_MAX)
        charge = r.integer("max_charge_w", 0, POWER_MAX)
        if kind == EV:
            phases = r.integer("phases", 1, 3, 1)
            target = r.integer("target_soc", 0, PER_MILLE, PER_MILLE)
            departure = r.time("departure") if r.has("departure") else None
            r.done(cls.EV_KEYS, " for an EV")
            return cls(cap, charge, kind=EV, phases=phases, target_soc=target, departure=departure)
        discharge = r.integer("max_discharge_w", 0, POWER_MAX, 0)
        min_soc = r.integer("min_soc", 0, PER_MILLE, 0)
        r.done(cls.BATTERY_KEYS, " for a battery")
        return cls(cap, charge, discharge, min_soc)

    def to_json(self) -> dict[str, Any]:
        if self.is_ev:
            d: dict[str, Any] = {
                "kind": EV,
                "capacity_mwh": self.capacity_mwh,
                "max_charge_w": self.max_charge_w,
                "phases": self.phases,
                "target_soc": self.target_soc,
                "departure": None if self.departure is None else hhmm(self.departure),
            }
            return _omit(d, {"phases": 1, "target_soc": PER_MILLE})
        d = {
            "capacity_mwh": self.capacity_mwh,
            "max_charge_w": self.max_charge_w,
            "max_discharge_w": self.max_discharge_w,
            "min_soc": self.min_soc,
        }
        return _omit(d, {"max_discharge_w": 0, "min_soc": 0})


@dataclass(frozen=True)
class EvPrefs:
    """An integrator home's EV: ``need_mwh`` to charge between ``arrive`` and ``departure``
    (seconds after midnight, UTC)."""

    max_charge_w: int
    phases: int = 1
    need_mwh: int = 0
    arrive: int = 0  # 00:00
    departure: int = 7 * 3600  # 07:00

    KEYS = ("max_charge_w", "phases", "need_mwh", "arrive", "departure")

    @classmethod
    def _parse(cls, r: _Reader) -> EvPrefs:
        out = cls(
            r.integer("max_charge_w", 0, POWER_MAX),
            r.integer("phases", 1, 3, 1),
            r.integer("need_mwh", 0, ENERGY_MAX, 0),
            r.time("arrive", 0),
            r.time("departure", 7 * 3600),
        )
        r.done(cls.KEYS)
        return out

    def to_json(self) -> dict[str, Any]:
        d = {
            "max_charge_w": self.max_charge_w,
            "phases": self.phases,
            "need_mwh": self.need_mwh,
            "arrive": hhmm(self.arrive),
            "departure": hhmm(self.departure),
        }
        return _omit(d, {"phases": 1, "need_mwh": 0, "arrive": "00:00", "departure": "07:00"})


@dataclass(frozen=True)
class DeferrablePrefs:
    """A load of ``w`` W on relay ``relay`` that may be postponed, on from hour ``hours[0]`` until
    hour ``hours[1]`` (UTC; wraps past midnight when the first is later)."""

    w: int
    relay: int = 0
    hours: tuple[int, int] = (0, 24)

    KEYS = ("w", "relay", "hours")

    @classmethod
    def _parse(cls, r: _Reader) -> DeferrablePrefs:
        w = r.integer("w", 0, POWER_MAX)
        relay = r.integer("relay", 0, RELAYS - 1, 0)
        hours = r.left.pop("hours", [0, 24])
        ok = isinstance(hours, list | tuple) and len(hours) == 2
        if not (ok and all(type(h) is int and 0 <= h <= 24 for h in hours)):
            raise r.fail("hours", "[from, until] hours in 0..24", hours)
        r.done(cls.KEYS)
        return cls(w, relay, (hours[0], hours[1]))

    def to_json(self) -> dict[str, Any]:
        d = {"w": self.w, "relay": self.relay, "hours": list(self.hours)}
        return _omit(d, {"relay": 0, "hours": [0, 24]})


@dataclass(frozen=True)
class PvPrefs:
    """Rooftop PV of ``kwp`` kW peak."""

    kwp: int

    @classmethod
    def _parse(cls, r: _Reader) -> PvPrefs:
        out = cls(r.integer("kwp", 1, KWP_MAX))
        r.done(("kwp",))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kwp": self.kwp}


@dataclass(frozen=True)
class FlexPrefs:
    """The member's cost of a change per device (mc/kWh; None: the default) and the price it asks
    per kWh in the flexibility market (None: its costs)."""

    pv: int | None = None
    battery: int | None = None
    ev: int | None = None
    load: int | None = None
    price: int | None = None

    KEYS = ("pv", "battery", "ev", "load", "price")

    @classmethod
    def _parse(cls, r: _Reader) -> FlexPrefs:
        out = cls(*(r.optional_int(k, 0, PRICE_MAX) for k in cls.KEYS))
        r.done(cls.KEYS)
        return out

    def to_json(self) -> dict[str, Any]:
        return _omit({k: getattr(self, k) for k in self.KEYS}, {})


@dataclass(frozen=True)
class IntegratorPrefs:
    """The home follows its own plan over ``horizon`` intervals."""

    horizon: int = 16

    @classmethod
    def _parse(cls, r: _Reader) -> IntegratorPrefs:
        out = cls(r.integer("horizon", 1, HORIZON_MAX, 16))
        r.done(("horizon",))
        return out

    def to_json(self) -> dict[str, Any]:
        return _omit({"horizon": self.horizon}, {"horizon": 16})


@dataclass(frozen=True)
class MemberPrefs:
    """Everything a member's preferences say; a part is None when the member has none."""

    min_sell: int | None = None  # mc/kWh; None: anchored on feed-in
    max_buy: int | None = None  # mc/kWh; None: anchored on retail
    subscription_per_day: int = 0  # nano-cent
    storage: StoragePrefs | None = None
    ev: EvPrefs | None = None
    deferrable: DeferrablePrefs | None = None
    pv: PvPrefs | None = None
    flex: FlexPrefs | None = None
    integrator: IntegratorPrefs | None = None

    KEYS = (
        "min_sell",
        "max_buy",
        "subscription_per_day",
        "storage",
        "ev",
        "deferrable",
        "pv",
        "flex",
        "integrator",
    )

    @classmethod
    def parse(cls, member_id: str, data: Mapping[str, Any]) -> MemberPrefs:
        """The preferences of ``member_id`` from their JSON object; :class:`MemberError` names the
        member and the field of the first value that is wrong."""
        r = _Reader(member_id, "", data)
        min_sell = r.optional_int("min_sell", PRICE_MIN, PRICE_MAX)
        max_buy = r.optional_int("max_buy", PRICE_MIN, PRICE_MAX)
        sub = r.integer("subscription_per_day", 0, MONEY_MAX, 0)
        storage = r.table("storage")
        ev = r.table("ev")
        deferrable = r.table("deferrable")
        pv = r.table("pv")
        flex = r.table("flex")
        integrator = r.table("integrator")
        r.done(cls.KEYS)
        out = cls(
            min_sell,
            max_buy,
            sub,
            None if storage is None else StoragePrefs._parse(storage),
            None if ev is None else EvPrefs._parse(ev),
            None if deferrable is None else DeferrablePrefs._parse(deferrable),
            None if pv is None else PvPrefs._parse(pv),
            None if flex is None else FlexPrefs._parse(flex),
            None if integrator is None else IntegratorPrefs._parse(integrator),
        )
        if out.ev is not None and out.integrator is None:
            raise MemberError(f"member {member_id!r} ev is an integrator home's EV: it needs integrator")
        if out.ev is not None and out.storage is not None and out.storage.is_ev:
            raise MemberError(
                f"member {member_id!r} ev: its EV is already its storage (kind 'ev'); give one of them"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in ``members.prefs`` (values equal to their defaults left out)."""
        out: dict[str, Any] = {}
        for key in self.KEYS:
            v = getattr(self, key)
            if v is None or (key == "subscription_per_day" and v == 0):
                continue
            out[key] = v if isinstance(v, int) else v.to_json()
        return out


@dataclass(frozen=True)
class Member:
    """A member as the ledger stores it. ``prefs_error``: why its stored preferences could not be
    read (they are then empty, and dispatch leaves its devices out, logged and counted)."""

    id: str
    name: str
    role: str
    feeder: str | None
    bus: str | None
    created: int  # Unix s it joined
    left_at: int | None = None  # Unix s it left
    prefs: MemberPrefs = field(default_factory=MemberPrefs)
    tariff: str = "default"
    prefs_error: str | None = None

    def market_preferences(self) -> Preferences:
        """The member's price limits for the market's orders."""
        return Preferences(
            self.id, feeder=self.feeder, min_sell=self.prefs.min_sell, max_buy=self.prefs.max_buy
        )
