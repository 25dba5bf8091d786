"""The community's grid in a run: the scenario's pilot grid, or a SimBench grid with boards assigned
round robin (``load``, one place for the coordinator's delivery check and the report); what the
metered flows do to it (``flows``: each board's interval-mean injection on its connection bus, the
lines' loading and the voltages predicted by the delivery screen, coordinator/delivery/screen.py,
linear sensitivities of a pandapower AC power flow); and what the coordinator's delivery check did
(``delivery``: its redispatches and the grid_checks it stored)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coordinator.ledger.queries import sim as q
from sim.errors import ScenarioError
from sim.profiles import STEP_S
from sim.scenario import Scenario

if TYPE_CHECKING:  # numpy and pandapower: the sim extra
    from coordinator.delivery.grid import GridModel
    from coordinator.delivery.guard import AssetCheck
    from coordinator.delivery.screen import Screen
    from coordinator.ledger import Ledger


@dataclass(frozen=True)
class GridInterval:
    start: int
    line: str  # the most loaded line
    line_pct: float
    trafo_pct: float
    v_min_pu: float
    v_max_pu: float
    violations: int = 0  # limits the interval breaks (voltage band, loadings, connection limits)


@dataclass(frozen=True)
class Grid:
    model: GridModel
    screen: Screen


@dataclass(frozen=True)
class Delivery:
    """What the coordinator's delivery check did in a run (its ``grid_checks`` and ``redispatches``).
    ``before`` and ``after`` count intervals whose expected schedule (the dispatcher's persistence
    forecast) broke a limit before and after redispatch: the check changes devices only when the
    schedule it was given breaks one, and stores the violations left after its changes."""

    intervals: int  # intervals checked
    redispatches: int  # device changes sent in orders
    redispatched: int  # intervals with at least one change
    before: int
    after: int
    compensation: int  # nano-cent the grid operator pays the members for the changes


def load(sc: Scenario) -> Grid | None:
    """The scenario's grid with every board connected, and its screen; None without a grid."""
    if sc.grid_pilot is None and sc.grid_simbench is None:
        return None
    from coordinator.delivery.grid import assign_boards, load_simbench
    from coordinator.delivery.pilot import load_toml
    from coordinator.delivery.screen import Screen

    boards = [h.board for h in sc.homes]
    if sc.grid_pilot is not None:
        grid = load_toml(sc.grid_pilot)
    else:
        assert sc.grid_simbench is not None
        grid = assign_boards(load_simbench(sc.grid_simbench), boards)
    connected = {c.board for c in grid.connections}
    missing = sorted(b for b in boards if b not in connected)
    if missing:
        raise ScenarioError(f"grid {grid.name!r} connects no {', '.join(missing[:5])}: add [[connection]]s")
    return Grid(grid, Screen(grid))


def check(g: Grid, length: int) -> AssetCheck:
    """The coordinator's delivery check on the run's grid, as ``coordinator run`` builds it."""
    from coordinator.delivery.guard import asset_check

    return asset_check(g.screen, g.model, length=length)


def flows(sc: Scenario, power: dict[str, list[int]], g: Grid | None = None) -> list[GridInterval]:
    """Per interval, from the metered net power (W per step, + import) of each home."""
    g = g or load(sc)
    if g is None:
        return []
    boards = {h.member: h.board for h in sc.homes}
    grid, screen = g.model, g.screen
    per = sc.market.interval_s // STEP_S
    out = []
    n = min(len(p) for p in power.values()) if power else 0
    for i in range(n // per):
        sched = {boards[m]: -sum(p[i * per : (i + 1) * per]) // per for m, p in power.items()}
        st = screen.predict(grid.bus_schedule(sched))
        k = int(st.line_loading.argmax()) if len(st.line_loading) else 0
        broken = [f for f in screen.flags(st, margins=False) if f.status == "violation"]
        own = [  # the connections' own import and export limits, as the check counts them
            c
            for c in grid.connections
            if (c.import_limit_w is not None and -sched.get(c.board, 0) > c.import_limit_w)
            or (c.export_limit_w is not None and sched.get(c.board, 0) > c.export_limit_w)
        ]
        out.append(
            GridInterval(
                sc.start + i * sc.market.interval_s,
                screen.lines[k] if screen.lines else "",
                float(st.line_loading.max()) if len(st.line_loading) else 0.0,
                float(st.trafo_loading.max()) if len(st.trafo_loading) else 0.0,
                float(st.vm_pu.min()),
                float(st.vm_pu.max()),
                len(broken) + len(own),
            )
        )
    return out


def delivery(ledger: Ledger, start: int, end: int) -> Delivery:
    """The delivery check's record of the intervals ``start`` <= interval < ``end``."""
    n, before, after = q.grid_checks(ledger, start, end)
    changes, intervals, paid = q.redispatch_totals(ledger, start, end)
    return Delivery(n, changes, intervals, before, after, paid)
