"""What each board can change in one interval to relieve the grid, and what a change costs its member.

A board's :class:`Assets` for one interval hold its planned setpoints (from the market, the
integrator plan or a flexibility order) and the ranges its devices allow:

- PV: the export ``pv_w`` the board is expected to make, which may be limited (``pv_limit``,
  direction -1); the order carries the new export limit;
- battery: the planned power ``bat_w`` (+ charge) and its charge/discharge limits (already
  narrowed by the state of charge); charging more lowers injection (-1), discharging more raises
  it (+1);
- EV: the planned charging power ``ev_w``, the least it must charge now to still reach its target
  by departure (``ev_min_w``) and the charger's maximum; charging less raises injection (+1),
  charging more (while it still needs energy) lowers it (-1); the order carries a current per
  phase at 230 V;
- deferrable load: ``load_w`` switched by relay ``load_relay``; switching it off raises injection.

A change costs the member ``Costs`` per kWh moved (mc/kWh): PV, the export it can no longer sell;
a battery, wear and round-trip loss; an EV, charging later in its window; a deferrable load, the
run it postpones. The grid operator pays that cost as compensation (see
:mod:`coordinator.delivery.guard`). Integers throughout; pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from coordinator.delivery.errors import AssetError
from coordinator.delivery.redispatch import Resource

PV = "pv_limit"
BATTERY = "battery"
EV = "ev"
LOAD = "load"
KINDS = (PV, BATTERY, EV, LOAD)
VOLTS = 230  # per phase, for EV currents


@dataclass(frozen=True)
class Costs:
    """A member's cost of a change, mc per kWh moved."""

    pv: int = 4_000  # export no longer sold (the feed-in tariff by default)
    battery: int = 1_000  # wear and round-trip loss of a cycle
    ev: int = 800  # charging later in the plug-in window
    load: int = 2_500  # a postponed appliance run

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if type(v) is not int or v < 0:
                raise AssetError(f"cost of {f.name} must be an integer >= 0 mc/kWh, got {v!r}")

    def of(self, kind: str) -> int:
        return {PV: self.pv, BATTERY: self.battery, EV: self.ev, LOAD: self.load}[kind]


@dataclass(frozen=True)
class Assets:
    """A board's flexible devices and planned setpoints for one interval (W, integers)."""

    board: str
    pv_w: int = 0  # expected PV export that may be limited
    bat_w: int = 0  # planned battery power, + charge
    bat_charge_w: int = 0  # most it may charge this interval
    bat_discharge_w: int = 0  # most it may discharge this interval
    ev_w: int = 0  # planned EV charging power
    ev_min_w: int = 0  # least it must charge now to reach its target by departure
    ev_max_w: int = 0  # most it may charge now (0: no EV plugged in, or it needs nothing more)
    ev_phases: int = 1
    load_w: int = 0  # deferrable load that is on
    load_relay: int = 0  # relay (bit index) that switches it
    costs: Costs = field(default_factory=Costs)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("board", "costs"):
                continue
            if type(v) is not int:
                raise AssetError(f"board {self.board!r}: {f.name} must be an integer, got {v!r}")
            if f.name != "bat_w" and v < 0:
                raise AssetError(f"board {self.board!r}: {f.name} cannot be negative, got {v}")
        if not -self.bat_discharge_w <= self.bat_w <= self.bat_charge_w:
            raise AssetError(
                f"board {self.board!r}: battery setpoint {self.bat_w} W outside "
                f"-{self.bat_discharge_w}..{self.bat_charge_w} W"
            )
        if not self.ev_min_w <= self.ev_w <= self.ev_max_w:
            raise AssetError(
                f"board {self.board!r}: EV setpoint {self.ev_w} W outside {self.ev_min_w}..{self.ev_max_w} W"
            )
        if not 1 <= self.ev_phases <= 3 or not 0 <= self.load_relay < 8:
            raise AssetError(f"board {self.board!r}: ev_phases must be 1..3 and load_relay 0..7")

    def resources(self, bus: str) -> list[Resource]:
        """The board's redispatch options at its connection bus, with what is left of each range."""
        c = self.costs
        spec = [
            (PV, -1, self.pv_w),
            (BATTERY, -1, self.bat_charge_w - self.bat_w),
            (BATTERY, 1, self.bat_w + self.bat_discharge_w),
            (EV, 1, self.ev_w - self.ev_min_w),
            (EV, -1, self.ev_max_w - self.ev_w),
            (LOAD, 1, self.load_w),
        ]
        return [Resource(self.board, bus, k, w, d, c.of(k)) for k, d, w in spec if w > 0]

    def moved(self, kind: str, delta_w: int) -> Assets:
        """The assets after a change of ``delta_w`` W of injection by device ``kind``."""
        if kind == PV:
            return replace(self, pv_w=self.pv_w + delta_w)
        if kind == BATTERY:
            return replace(self, bat_w=self.bat_w - delta_w)
        if kind == EV:
            return replace(self, ev_w=self.ev_w - delta_w)
        if kind == LOAD:
            return replace(self, load_w=self.load_w - delta_w)
        raise AssetError(f"unknown device kind {kind!r}; known: {', '.join(KINDS)}")

    def setpoint(self, kind: str) -> int:
        """The value an order carries for ``kind``: PV limit W, battery W, EV mA per phase, load W."""
        if kind == PV:
            return self.pv_w
        if kind == BATTERY:
            return self.bat_w
        if kind == EV:
            return ev_ma(self.ev_w, self.ev_phases)
        if kind == LOAD:
            return self.load_w
        raise AssetError(f"unknown device kind {kind!r}; known: {', '.join(KINDS)}")


def ev_ma(w: int, phases: int) -> int:
    """Charging current per phase (mA, at 230 V) for a power in W."""
    return max(0, w) * 1000 // (VOLTS * phases)


def ev_w(ma: int, phases: int) -> int:
    """Charging power (W) of a current per phase in mA: the inverse of :func:`ev_ma`."""
    return ma * VOLTS * phases // 1000
