"""The delivery guard: before orders go out, check the interval's expected schedule against the
grid and, if it breaks a limit, change the boards' flexible devices that fix it at least cost to
the members.

:func:`redispatch_assets` works on every device a board has (:mod:`coordinator.delivery.assets`):
PV output limits, battery charge/discharge, EV charging current and deferrable loads. Each round
screens the schedule, linearises the constraints near their limits at the current point and lets
:func:`coordinator.delivery.redispatch.redispatch` pick the cheapest effect per unit of cost; up to
``rounds`` rounds re-linearise. The schedule it returns is checked again (AC power flow where the
screen is not sure), so a remaining violation is reported, never hidden.

Each :class:`Change` carries its reason (the constraints and their predicted values) and the
compensation owed to the member: its cost per kWh (``Costs``) times the energy moved, paid by the
grid operator whose grid could not carry the schedule. :func:`guard` is the PV-only form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from coordinator.delivery.assets import LOAD, PV, Assets, Costs
from coordinator.delivery.grid import GridModel
from coordinator.delivery.redispatch import Adjustment, Constraint, redispatch
from coordinator.delivery.screen import EXPORT, IMPORT, CheckResult, Screen
from coordinator.delivery.summary import GridSummary, summarize


@dataclass(frozen=True)
class Change:
    """One device's redispatch for one interval."""

    board: str
    kind: str  # pv_limit | battery | ev | load
    delta_w: int  # change of the board's injection (+ more export / less import)
    setpoint: int  # what the order carries: PV limit W, battery W (+ charge), EV mA, load W left on
    reason: str
    compensation: int  # nano-cent for the interval, to the member


@dataclass(frozen=True)
class GridCheck:
    """The delivery check of one interval: the devices' changes and how close the grid then runs
    to its limits."""

    changes: list[Change]
    summary: GridSummary


@dataclass(frozen=True)
class Curtailment:
    board: str
    pv_limit_w: int  # the export limit to send
    delta_w: int  # change of the board's expected injection (< 0)
    reason: str
    compensation: int  # nano-cent for the interval


def energy_cost(delta_w: int, length: int, cost: int) -> int:
    """Nano-cent for moving ``delta_w`` W for ``length`` s at ``cost`` mc/kWh (1 mWh = 3.6 J)."""
    return abs(delta_w) * length * 10 // 36 * cost


def redispatch_assets(
    screen: Screen,
    grid: GridModel,
    schedule: Mapping[str, int],
    assets: Mapping[str, Assets],
    *,
    length: int,
    rounds: int = 3,
) -> tuple[list[Change], CheckResult, dict[str, Assets]]:
    """``schedule``: expected W per board (+ export), with the assets' planned setpoints in it;
    ``assets``: the boards' devices. Returns the changes (sorted by board and kind), the check of
    the redispatched schedule, and every board's assets after the changes."""
    s = dict(schedule)
    now = dict(assets)
    total: dict[tuple[str, str], int] = {}
    why: dict[tuple[str, str], list[str]] = {}
    for _ in range(rounds):
        if screen.check_boards(s).ok:
            break
        # a board beyond its own connection's limit is brought back by its own devices first; the
        # grid's constraints (sensitivities per bus) then move any board's
        moves = [m for b, x in sorted(now.items()) for m in _connection(grid, b, s.get(b, 0), x, length)]
        if not moves:
            cons = screen.constraints(grid.bus_schedule(s))
            res = [r for b, a in sorted(now.items()) for r in a.resources(grid.board_bus(b))]
            moves = redispatch(cons, res, length).adjustments
        if not moves:
            break
        for a in moves:
            s[a.board] = s.get(a.board, 0) + a.delta_w
            now[a.board] = now[a.board].moved(a.kind, a.delta_w)
            key = (a.board, a.kind)
            total[key] = total.get(key, 0) + a.delta_w
            why.setdefault(key, []).append(a.reason)
    for (b, k), d in total.items():  # a relay switches a load whole: shed it all
        if k == LOAD and 0 < d < assets[b].load_w:
            rest = assets[b].load_w - d
            s[b] += rest
            now[b] = now[b].moved(LOAD, rest)
            total[(b, k)] = assets[b].load_w
    result = screen.check_boards(s)
    changes = [
        Change(
            b,
            k,
            d,
            now[b].setpoint(k),
            "; ".join(dict.fromkeys(why[(b, k)])),
            energy_cost(d, length, now[b].costs.of(k)),
        )
        for (b, k), d in sorted(total.items())
        if d
    ]
    return changes, result, now


def _connection(grid: GridModel, board: str, w: int, a: Assets, length: int) -> list[Adjustment]:
    """The moves of ``board``'s own devices that keep its injection ``w`` within its connection's
    import and export limits (none when it is within them or has no limits)."""
    c = next((c for c in grid.connections if c.board == board), None)
    if c is None:
        return []
    bus = grid.board_bus(board)
    cons = []
    if c.export_limit_w is not None and w > c.export_limit_w:
        cons.append(Constraint(f"{EXPORT}:{board}", float(w), float(c.export_limit_w), {bus: 1.0}))
    if c.import_limit_w is not None and -w > c.import_limit_w:
        cons.append(Constraint(f"{IMPORT}:{board}", float(-w), float(c.import_limit_w), {bus: -1.0}))
    return redispatch(cons, a.resources(bus), length).adjustments if cons else []


def guard(
    screen: Screen,
    grid: GridModel,
    schedule: Mapping[str, int],
    pv_boards: Mapping[str, int],
    *,
    length: int,
    feed_in: int,
    rounds: int = 3,
) -> tuple[list[Curtailment], CheckResult]:
    """PV export limits only. ``schedule``: expected W per board (+ export); ``pv_boards``: boards
    whose export can be limited. Returns the curtailments and the check of the curtailed schedule
    (AC-confirmed where the screen is not sure)."""
    costs = Costs(pv=feed_in)
    assets = {b: Assets(b, pv_w=schedule[b], costs=costs) for b in pv_boards if schedule.get(b, 0) > 0}
    changes, result, _ = redispatch_assets(screen, grid, schedule, assets, length=length, rounds=rounds)
    curt = [
        Curtailment(c.board, max(0, c.setpoint), c.delta_w, c.reason, c.compensation)
        for c in changes
        if c.kind == PV
    ]
    return curt, result


AssetCheck = Callable[[dict[str, int], dict[str, Assets]], GridCheck]


def asset_check(screen: Screen, grid: GridModel, *, length: int) -> AssetCheck:
    """The dispatcher's delivery check for ``grid``: boards that the grid model does not connect are
    left out (their power is not known to the screen). Runs pandapower: call it off the event loop."""
    connected = {c.board for c in grid.connections}

    def check(expected: dict[str, int], assets: dict[str, Assets]) -> GridCheck:
        sched = {b: w for b, w in expected.items() if b in connected}
        mine = {b: a for b, a in assets.items() if b in connected}
        changes, result, _ = redispatch_assets(screen, grid, sched, mine, length=length)
        final = dict(sched)
        for c in changes:
            final[c.board] = final.get(c.board, 0) + c.delta_w
        return GridCheck(changes, summarize(screen, final, result))

    return check


def check_from_file(path: str | Path, *, length: int) -> AssetCheck:
    """:func:`asset_check` for a pilot grid TOML (``[delivery] grid`` of the coordinator's config)."""
    from coordinator.delivery.pilot import load_toml

    grid = load_toml(path)
    return asset_check(Screen(grid), grid, length=length)
