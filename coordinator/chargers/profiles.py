"""What a charger is told for an interval (pure: no I/O).

The limit of the running interval is the member's EV current from its board's signed order
(``Order.ev_ma``: the storage market's setpoint, lowered by the delivery check where the grid
would break), never above what the member's EV preferences allow. After the interval the
profile goes on with the current that still meets the car's departure need (the energy to its
target by its departure, spread over the time left), so a charger that hears nothing more from
the coordinator still charges the car in time: the coordinator's next profile replaces it at the
next interval. A current below the IEC 61851 minimum of 6 A is 0 (no charging) unless the need
requires charging, then the minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.delivery.assets import ev_ma
from coordinator.delivery.devices import next_time
from coordinator.members import PER_MILLE, MemberPrefs

MIN_MA = 6_000  # IEC 61851: no charging below 6 A
DEFAULT_MAX_MA = 32_000  # a charger whose member names no EV power: the largest single-phase wallbox


@dataclass(frozen=True)
class Need:
    """The car's need: mWh still to charge by ``departure`` (Unix s; None: no deadline)."""

    mwh: int
    departure: int | None


@dataclass(frozen=True)
class Plan:
    """A charging profile: ``limit_ma`` per phase until ``until`` (Unix s), then ``then_ma``."""

    limit_ma: int
    until: int
    then_ma: int
    phases: int
    need: Need | None


def ev_limits(prefs: MemberPrefs) -> tuple[int, int]:
    """(phases, largest current per phase mA) of the member's EV."""
    st = prefs.storage
    if st is not None and st.is_ev:
        return st.phases, max(MIN_MA, ev_ma(st.max_charge_w, st.phases))
    if prefs.ev is not None:
        return prefs.ev.phases, max(MIN_MA, ev_ma(prefs.ev.max_charge_w, prefs.ev.phases))
    return 1, DEFAULT_MAX_MA


def need(prefs: MemberPrefs, now: int, soc: int | None, delivered_mwh: int) -> Need | None:
    """The car's need now: a market EV's energy from ``soc`` (per-mille, the charger's or the
    board's report) to its target by its departure; an integrator home's EV's ``need_mwh`` less
    what its session delivered, by its departure. None when it is not known."""
    st = prefs.storage
    if st is not None and st.is_ev:
        if soc is None:
            return None
        want = st.capacity_mwh * (st.target_soc - min(max(soc, 0), PER_MILLE)) // PER_MILLE
        dep = None if st.departure is None else next_time(now + 1, st.departure)
        return Need(max(0, want), dep)
    if prefs.ev is not None:
        return Need(max(0, prefs.ev.need_mwh - delivered_mwh), next_time(now + 1, prefs.ev.departure))
    return None


def need_ma(n: Need | None, start: int, phases: int, max_ma: int) -> int:
    """The current per phase that charges ``n`` by its departure from ``start`` on (the charger's
    largest without a need or a deadline, or past the deadline; 0 with nothing left to charge)."""
    if n is None or n.departure is None:
        return max_ma
    if n.mwh <= 0:
        return 0
    left = n.departure - start
    if left <= 0:
        return max_ma
    w = -(-n.mwh * 36 // (10 * left))  # mWh over ``left`` s -> W, rounded up (1 mWh = 3.6 J)
    ma = -(-w * 1000 // (230 * phases))
    return min(max_ma, max(MIN_MA, ma))


def plan(
    prefs: MemberPrefs,
    order_ma: int | None,
    start: int,
    length: int,
    now: int,
    soc: int | None = None,
    delivered_mwh: int = 0,
) -> Plan:
    """The profile for the interval ``start``: the order's current (None: the board got no EV
    setpoint, e.g. the car's state of charge is not known yet; then the departure need's current),
    within the EV's limits, then the departure need's current."""
    phases, max_ma = ev_limits(prefs)
    n = need(prefs, now, soc, delivered_mwh)
    end = start + length
    then = need_ma(n, end, phases, max_ma)
    limit = need_ma(n, now, phases, max_ma) if order_ma is None else order_ma
    limit = min(max(0, limit), max_ma)
    if limit < MIN_MA:
        limit = 0
    return Plan(limit, end, then, phases, n)
