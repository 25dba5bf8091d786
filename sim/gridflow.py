"""What the community's metered flows do to its grid: each board's interval-mean injection put on
its connection bus (the scenario's pilot grid, or a SimBench grid with boards assigned round
robin), and the grid's line loading and voltages predicted by the delivery screen
(coordinator/delivery/screen.py, linear sensitivities of a pandapower AC power flow)."""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import ScenarioError
from sim.profiles import STEP_S
from sim.scenario import Scenario


@dataclass(frozen=True)
class GridInterval:
    start: int
    line: str  # the most loaded line
    line_pct: float
    trafo_pct: float
    v_min_pu: float
    v_max_pu: float


def flows(sc: Scenario, power: dict[str, list[int]]) -> list[GridInterval]:
    """Per interval, from the metered net power (W per step, + import) of each home."""
    if sc.grid_pilot is None and sc.grid_simbench is None:
        return []
    from coordinator.delivery.grid import assign_boards, load_simbench
    from coordinator.delivery.pilot import load_toml
    from coordinator.delivery.screen import Screen

    boards = {h.member: h.board for h in sc.homes}
    if sc.grid_pilot is not None:
        grid = load_toml(sc.grid_pilot)
    else:
        assert sc.grid_simbench is not None
        grid = assign_boards(load_simbench(sc.grid_simbench), boards.values())
    connected = {c.board for c in grid.connections}
    missing = sorted(b for b in boards.values() if b not in connected)
    if missing:
        raise ScenarioError(f"grid {grid.name!r} connects no {', '.join(missing[:5])}: add [[connection]]s")
    screen = Screen(grid)
    per = sc.market.interval_s // STEP_S
    out = []
    n = min(len(p) for p in power.values()) if power else 0
    for i in range(n // per):
        sched = {boards[m]: -sum(p[i * per : (i + 1) * per]) // per for m, p in power.items()}
        st = screen.predict(grid.bus_schedule(sched))
        k = int(st.line_loading.argmax()) if len(st.line_loading) else 0
        out.append(
            GridInterval(
                sc.start + i * sc.market.interval_s,
                screen.lines[k] if screen.lines else "",
                float(st.line_loading.max()) if len(st.line_loading) else 0.0,
                float(st.trafo_loading.max()) if len(st.trafo_loading) else 0.0,
                float(st.vm_pu.min()),
                float(st.vm_pu.max()),
            )
        )
    return out
