"""A simulated day on a benchmark LV grid with every kind of member asset, with and without the
delivery guard.

The community (:func:`community`) on a SimBench LV grid: one home board per connection bus with
the bus's SimBench load and PV (PV x ``pv_scale``), and on the buses round robin:

- EVs (11 kW, three-phase) plugged in from 17:00 to 07:00 that need 10-25 kWh each and charge in
  the cheapest intervals of their window (the local price curve :data:`PRICES`): they all pick the
  same cheap night hours, so without the guard the transformer overloads;
- home batteries (5 kW, 10 kWh) and one community battery (50 kW, 150 kWh) that trade in the
  local market: a day plan (:func:`coordinator.delivery.integrator.plan`) against the local price, charging
  at the cheap sunny midday and selling in the evening;
- heat pumps (3 kW) on a relay, four hours of runs from 22:00; a paused run is caught up within
  three more hours (pausing costs the member little: :data:`COSTS`).

Each interval (:func:`simulate`) builds the schedule from the members' plans. Without the guard it
goes to the grid as it is; with the guard, :func:`coordinator.delivery.guard.redispatch_assets`
changes devices at least cost first. Either way pandapower's AC power flow of the schedule that
is actually delivered decides whether a limit broke. The state carries over: an EV charged less
now re-plans its remaining need over the rest of its window, a battery's state of charge follows
what it did, a shed heat-pump run is appended. Deterministic for a seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from coordinator.delivery.assets import Assets, Costs
from coordinator.delivery.grid import Connection, GridModel
from coordinator.delivery.guard import Change, redispatch_assets
from coordinator.delivery.integrator import Home, Slot, plan
from coordinator.delivery.schedules import simbench_parts, simbench_peak_pv_step
from coordinator.delivery.screen import GridState, Screen

STEP = 900  # SimBench's profile step, s
# The local price (mc/kWh) by hour of day: cheap night, morning peak, sunny midday near the
# feed-in tariff, dear evening.
PRICES = (12_000,) * 6 + (20_000,) * 4 + (6_000,) * 6 + (26_000,) * 5 + (16_000,) * 3
FEED_IN = 4_000
EV_W, EV_FROM, EV_UNTIL = 11_000, 17, 7  # charger W, plug-in and departure hours
BAT_W, BAT_MWH = 5_000, 10_000_000
COMMUNITY_W, COMMUNITY_MWH = 50_000, 150_000_000
HP_W, HP_FROM, HP_HOURS, HP_SLACK = 3_000, 22, 4, 3  # 4 h of runs from 22:00, 3 h to catch up
# What a change costs the members (mc/kWh): PV export at the feed-in tariff; pausing a heat pump
# costs little (the house keeps its heat for an hour or two), less than shifting an EV.
COSTS = Costs(pv=FEED_IN, load=600)


def mwh(w: int, s: int) -> int:
    return w * s * 10 // 36


@dataclass
class Member:
    board: str
    kind: str  # home | ev | battery | heatpump
    need: int = 0  # EV: mWh still to charge; heat pump: intervals it has run
    soc: int = 0  # battery mWh
    capacity: int = 0
    max_w: int = 0
    plan_w: list[int] = field(default_factory=list)  # battery: the day plan, W (+ charge)


@dataclass(frozen=True)
class Interval:
    start_s: int  # seconds from the day's first interval
    violations: tuple[str, ...]  # AC violations of what was delivered: "kind where value"
    changes: tuple[Change, ...]
    ev_w: int  # EV charging delivered, W in all
    flagged: bool  # the screen (or AC) found a violation before redispatch


@dataclass(frozen=True)
class Day:
    intervals: tuple[Interval, ...]
    ev_need: dict[str, int]  # mWh each EV needed
    ev_got: dict[str, int]  # mWh each EV got by departure
    runs: dict[str, int]  # intervals each heat pump ran (a full night is HP_HOURS of them)
    compensation: int  # nano-cent paid to members for redispatch
    seconds: float  # wall time of the simulation (screen, redispatch, AC)
    ac_runs: int


def community(
    grid: GridModel, *, evs: int = 20, batteries: int = 4, heatpumps: int = 6, seed: int = 0
) -> tuple[GridModel, list[Member]]:
    """The boards of the simulated community on ``grid`` (boards connected round robin)."""
    rng = np.random.default_rng(seed)
    n = len(grid.connection_buses)
    members = [Member(f"home-{i:02d}", "home") for i in range(n)]
    members += [Member(f"ev-{i:02d}", "ev", need=int(rng.integers(10, 26)) * 1_000_000) for i in range(evs)]
    members += [
        Member(f"bat-{i:02d}", "battery", soc=BAT_MWH // 2, capacity=BAT_MWH, max_w=BAT_W)
        for i in range(batteries)
    ]
    members.append(
        Member("community", "battery", soc=COMMUNITY_MWH // 3, capacity=COMMUNITY_MWH, max_w=COMMUNITY_W)
    )
    members += [Member(f"hp-{i:02d}", "heatpump") for i in range(heatpumps)]
    buses = grid.connection_buses
    conns = [Connection(m.board, buses[i % n]) for i, m in enumerate(members)]  # homes: bus i
    return replace(grid, connections=tuple(conns)), members


def _hour(k: int, start_step: int, length: int) -> int:
    return (start_step * STEP + k * length) // 3600 % 24


def simulate(
    grid: GridModel,
    *,
    hours: int = 24,
    length: int = 3600,
    start_hour: int = 8,
    guarded: bool = True,
    pv_scale: float = 1.0,
    evs: int = 20,
    seed: int = 0,
    screen: Screen | None = None,
) -> Day:
    """Simulate ``hours`` from ``start_hour`` of the sunniest day of a SimBench grid, in intervals of
    ``length`` s (a multiple of 900: SimBench's profile is sampled at each interval's start)."""
    if length % STEP or hours * 3600 % length:
        raise ValueError("length must be a multiple of 900 s that divides the horizon")
    g, members = community(grid, evs=evs, seed=seed)
    scr = (screen if screen is not None else Screen(grid)).with_connections(g)
    peak = simbench_peak_pv_step(grid)
    day0 = peak - peak % 96 + start_hour * 4
    n = hours * 3600 // length
    steps = [day0 + k * length // STEP for k in range(n)]
    loads, pvs = simbench_parts(grid, steps, pv_scale=pv_scale)
    price = [PRICES[_hour(k, day0, length)] for k in range(n)]
    bus_of = {c.board: c.bus for c in g.connections}
    ev_need = {m.board: m.need for m in members if m.kind == "ev"}
    plugged = [_hour(k, day0, length) >= EV_FROM or _hour(k, day0, length) < EV_UNTIL for k in range(n)]
    for m in members:
        if m.kind == "battery":
            slots = [Slot(0, 0, p, p) for p in price]
            m.plan_w = plan(Home(m.capacity, m.soc, m.max_w), slots, length, levels=4).battery_w
    out: list[Interval] = []
    comp = 0
    ac_runs = 0
    t0 = time.perf_counter()
    costs = COSTS
    for k in range(n):
        hour = _hour(k, day0, length)
        sched: dict[str, int] = {}
        assets: dict[str, Assets] = {}
        for m in members:
            b = m.board
            if m.kind == "home":
                bus = bus_of[b]
                sched[b] = pvs[k][bus] - loads[k][bus]
                if pvs[k][bus] > 0:
                    assets[b] = Assets(b, pv_w=pvs[k][bus], costs=costs)
            elif m.kind == "ev":
                a = _ev_assets(m, k, plugged, price, length, costs)
                sched[b] = -a.ev_w
                assets[b] = a
            elif m.kind == "battery":
                a = _battery_assets(m, m.plan_w[k], length, costs)
                sched[b] = -a.bat_w
                assets[b] = a
            else:
                on = (hour - HP_FROM) % 24 < HP_HOURS + HP_SLACK and m.need < HP_HOURS * 3600 // length
                w = HP_W if on else 0
                sched[b] = -w
                if w:
                    assets[b] = Assets(b, load_w=w, load_relay=0, costs=costs)
        changes: list[Change] = []
        flagged = False
        if guarded:
            first = scr.check_boards(sched)
            flagged = not first.ok
            ac_runs += first.ac_checked
            if flagged:
                changes, after, now = redispatch_assets(scr, g, sched, assets, length=length)
                ac_runs += after.ac_checked
                for c in changes:
                    sched[c.board] += c.delta_w
                assets.update(now)
                comp += sum(c.compensation for c in changes)
        ac = scr.ac(g.bus_schedule(sched))
        ac_runs += 1
        viol = _violations(scr, ac)
        ev_w = 0
        for m in members:
            got = assets.get(m.board)
            if got is None:
                continue
            if m.kind == "ev":
                m.need -= min(m.need, mwh(got.ev_w, length))
                ev_w += got.ev_w
            elif m.kind == "battery":
                m.soc = min(m.capacity, max(0, m.soc + mwh(got.bat_w, length)))
            elif m.kind == "heatpump" and got.load_w:
                m.need += 1  # one run done; a shed run stays owed and is appended
        out.append(Interval(k * length, tuple(viol), tuple(changes), ev_w, flagged))
    seconds = time.perf_counter() - t0
    charged = {m.board: ev_need[m.board] - m.need for m in members if m.kind == "ev"}
    runs = {m.board: m.need for m in members if m.kind == "heatpump"}
    return Day(tuple(out), ev_need, charged, runs, comp, seconds, ac_runs)


def _ev_assets(
    m: Member, k: int, plugged: Sequence[bool], price: Sequence[int], length: int, costs: Costs
) -> Assets:
    """The EV's plan for interval k: its remaining need over the cheapest intervals left in its window."""
    if not plugged[k] or m.need <= 0:
        return Assets(m.board, costs=costs, ev_phases=3)
    window = [k]
    j = k + 1
    while j < len(plugged) and plugged[j]:
        window.append(j)
        j += 1
    per = mwh(EV_W, length)
    left = m.need
    now = 0
    for i in sorted(window, key=lambda i: (price[i], i)):
        e = min(per, left)
        if i == k:
            now = e
        left -= e
        if left <= 0:
            break
    must = max(0, m.need - per * (len(window) - 1))  # what the rest of the window cannot take
    up = min(per, m.need)

    def w(e: int) -> int:
        return -(-e * 36 // (length * 10))  # W, rounded up

    return Assets(
        m.board, ev_w=w(now), ev_min_w=w(must), ev_max_w=max(w(up), w(now)), ev_phases=3, costs=costs
    )


def _battery_assets(m: Member, planned: int, length: int, costs: Costs) -> Assets:
    """The battery's plan for the interval, within what its state of charge allows."""
    room = (m.capacity - m.soc) * 36 // (length * 10)
    avail = m.soc * 36 // (length * 10)
    charge = min(m.max_w, room)
    discharge = min(m.max_w, avail)
    bat = min(charge, max(-discharge, planned))
    return Assets(m.board, bat_w=bat, bat_charge_w=charge, bat_discharge_w=discharge, costs=costs)


def _violations(scr: Screen, s: GridState) -> list[str]:
    lim = scr.grid.limits
    out = []
    for i, b in enumerate(scr.v_buses):
        v = float(s.vm_pu[i])
        if v > lim.v_max_pu or v < lim.v_min_pu:
            out.append(f"voltage {b} {v:.4f} pu")
    for names, values, limit in (
        (scr.lines, s.line_loading, lim.line_max_percent),
        (scr.transformers, s.trafo_loading, lim.trafo_max_percent),
    ):
        for i, n in enumerate(names):
            if float(values[i]) > limit:
                out.append(f"loading {n} {float(values[i]):.1f} %")
    return out
