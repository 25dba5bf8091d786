"""A member's flexible devices from its preferences, and their :class:`Assets` for one interval.

Preferences (``members.prefs``, JSON), every key optional:

- ``storage``: a battery or an EV as :mod:`coordinator.delivery.dispatch` describes it (market-cleared);
- ``ev``: an EV beside a battery on an integrator home: ``{"max_charge_w": 11000, "phases": 3,
  "need_mwh": 20000000, "arrive": "17:00", "departure": "07:00"}`` (UTC);
- ``deferrable``: a load on a relay that may be postponed: ``{"w": 3000, "relay": 0, "hours":
  [18, 23]}`` (on from 18:00 to 23:00 UTC; without ``hours`` it counts as on all day);
- ``pv``: ``{"kwp": 8}``: rooftop PV; its export may be offered to the flexibility market (the
  delivery check may limit any board's export whatever its preferences);
- ``flex``: the member's costs of a change, mc/kWh (``pv``, ``battery``, ``ev``, ``load``; defaults
  in :class:`~coordinator.delivery.assets.Costs`, PV at the feed-in tariff) and ``price``, what it
  asks per kWh in the flexibility market (default: its costs);
- ``integrator``: ``{"horizon": 16}``: the home's battery and EV follow the integrator plan
  (:mod:`coordinator.delivery.integrator`) instead of the market.

Pure: the dispatcher passes in the state of charge and the planned setpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.delivery.assets import Assets, Costs
from coordinator.delivery.errors import AssetError


def _int(d: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    v = d.get(key, default)
    if type(v) is not int or v < 0:
        raise AssetError(f"{where}.{key} must be an integer >= 0, got {v!r}")
    return v


def hhmm(v: object, where: str) -> int:
    """Seconds after midnight of an "HH:MM" time."""
    try:
        hh, mm = (int(x) for x in str(v).split(":"))
    except ValueError:
        raise AssetError(f"{where} must be HH:MM, got {v!r}") from None
    if not (0 <= hh < 24 and 0 <= mm < 60):
        raise AssetError(f"{where} must be HH:MM, got {v!r}")
    return hh * 3600 + mm * 60


def next_time(start: int, seconds_of_day: int) -> int:
    """The first time at or after ``start`` (Unix s) whose time of day (UTC) is ``seconds_of_day``."""
    t = start - start % 86_400 + seconds_of_day
    return t if t >= start else t + 86_400


@dataclass(frozen=True)
class Devices:
    member: str
    costs: Costs
    battery: tuple[int, int, int, int] | None = None  # capacity mWh, charge W, discharge W, min mWh
    ev: tuple[int, int, int] | None = None  # charge W, phases, target soc per-mille (market EV)
    deferrable: tuple[int, int, int, int] | None = None  # W, relay, from hour, until hour
    flex_price: dict[str, int] | None = None
    ev_capacity: int = 0  # a market EV's battery, mWh (its state of charge is the board's bat_soc)

    def battery_mwh(self, soc: int | None) -> int | None:
        """The battery's stored energy (mWh) at ``soc`` per-mille; None without a battery or a reading."""
        if self.battery is None or soc is None:
            return None
        return self.battery[0] * soc // 1000

    def ev_need(self, soc: int) -> int:
        """mWh a market EV at ``soc`` per-mille still needs to reach its target state of charge."""
        if self.ev is None:
            return 0
        return max(0, self.ev_capacity * (self.ev[2] - soc) // 1000)

    @classmethod
    def from_prefs(cls, member: str, prefs: Mapping[str, Any], *, feed_in: int) -> Devices:
        where = f"member {member!r} prefs"
        for key in ("flex", "storage", "ev", "deferrable", "integrator", "pv"):
            if prefs.get(key) and not isinstance(prefs[key], Mapping):
                raise AssetError(f"{where}.{key} must be a table, got {prefs[key]!r}")
        fx = prefs.get("flex") or {}
        d = Costs(pv=feed_in)
        costs = Costs(
            pv=_int(fx, "pv", f"{where}.flex", d.pv),
            battery=_int(fx, "battery", f"{where}.flex", d.battery),
            ev=_int(fx, "ev", f"{where}.flex", d.ev),
            load=_int(fx, "load", f"{where}.flex", d.load),
        )
        battery = ev = deferrable = None
        ev_capacity = 0
        st = prefs.get("storage")
        if st:
            w = f"{where}.storage"
            cap = _int(st, "capacity_mwh", w)
            if st.get("kind") == "ev":
                ev = (_int(st, "max_charge_w", w), _int(st, "phases", w, 1), _int(st, "target_soc", w, 1000))
                ev_capacity = cap
            else:
                battery = (
                    cap,
                    _int(st, "max_charge_w", w),
                    _int(st, "max_discharge_w", w, 0),
                    cap * _int(st, "min_soc", w, 0) // 1000,
                )
        if ev is None and prefs.get("ev"):  # an integrator home's EV beside its battery
            w = f"{where}.ev"
            ev = (_int(prefs["ev"], "max_charge_w", w), _int(prefs["ev"], "phases", w, 1), 1000)
        df = prefs.get("deferrable")
        if df:
            w = f"{where}.deferrable"
            hours = df.get("hours", [0, 24])
            if not (isinstance(hours, list) and len(hours) == 2 and all(type(h) is int for h in hours)):
                raise AssetError(f"{w}.hours must be [from, until] hours, got {hours!r}")
            deferrable = (_int(df, "w", w), _int(df, "relay", w, 0), hours[0], hours[1])
            if deferrable[1] > 7:
                raise AssetError(f"{w}.relay must be 0..7, got {deferrable[1]}")
        price = fx.get("price")
        flex_price = None
        if price is not None:
            flex_price = {k: _int(fx, "price", f"{where}.flex") for k in ("pv", "battery", "ev", "load")}
        return cls(member, costs, battery, ev, deferrable, flex_price, ev_capacity)

    def ask(self, kind: str) -> int:
        """What the member asks per kWh of flexibility from ``kind`` (mc/kWh)."""
        if self.flex_price is not None:
            return self.flex_price[kind]
        return self.costs.of(kind)

    def load_on(self, start: int) -> int:
        """The deferrable load's power in the interval starting at ``start`` (W; 0 outside its hours)."""
        if self.deferrable is None:
            return 0
        w, _, a, b = self.deferrable
        h = start % 86_400 // 3600
        on = a <= h < b if a <= b else (h >= a or h < b)
        return w if on else 0

    def assets(
        self,
        board: str,
        start: int,
        length: int,
        *,
        export_w: int,
        soc: int | None = None,
        bat_w: int = 0,
        ev_w: int = 0,
        ev_need: int = 0,
        ev_deadline: int | None = None,
        load_w: int | None = None,
    ) -> Assets:
        """The board's assets for the interval: ``export_w`` expected export (PV limit range),
        ``soc`` the battery's mWh, ``bat_w``/``ev_w`` the planned setpoints, ``ev_need`` the mWh the
        EV still needs by ``ev_deadline``."""
        per = length * 10 // 36  # mWh per W over the interval
        charge = discharge = 0
        if self.battery is not None and soc is not None:
            cap, cw, dw, lo = self.battery
            charge = min(cw, max(0, cap - soc) // per)
            discharge = min(dw, max(0, soc - lo) // per)
        bat = min(charge, max(-discharge, bat_w))
        ev_max = ev_min = 0
        phases = 1
        if self.ev is not None and ev_need > 0:
            cw, phases, _ = self.ev
            ev_max = min(cw, -(-ev_need // per))
            if ev_deadline is not None:
                later = max(0, (ev_deadline - start) // length - 1)
                ev_min = min(ev_max, -(-max(0, ev_need - cw * per * later) // per))
        ev = min(ev_max, max(ev_min, ev_w))
        load = self.load_on(start) if load_w is None else load_w
        relay = self.deferrable[1] if self.deferrable is not None else 0
        return Assets(
            board,
            pv_w=max(0, export_w),
            bat_w=bat,
            bat_charge_w=charge,
            bat_discharge_w=discharge,
            ev_w=ev,
            ev_min_w=ev_min,
            ev_max_w=ev_max,
            ev_phases=max(1, min(3, phases)),
            load_w=load,
            load_relay=relay,
            costs=self.costs,
        )
