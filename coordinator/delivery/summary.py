"""One line per interval on how close the grid ran to its limits: the lowest and highest voltage,
the most loaded line and transformer, and the limits still broken after redispatch.

Values are the AC power flow's where the check ran it for the final schedule, else the linear
screen's prediction (``source`` says which). Stored by the dispatcher (``grid_checks``) and shown on
the dashboard's grid view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from coordinator.delivery.screen import CheckResult, GridState, Screen

SCREEN = "screen"
AC = "ac"


@dataclass(frozen=True)
class GridSummary:
    v_min_pu: float | None
    v_min_bus: str | None
    v_max_pu: float | None
    v_max_bus: str | None
    line_max_pct: float | None
    line_max: str | None
    trafo_max_pct: float | None
    trafo_max: str | None
    violations: int  # limits still broken (after redispatch)
    source: str  # SCREEN | AC


def _at(values: np.ndarray, names: tuple[str, ...], pick: int) -> tuple[float | None, str | None]:
    """(value, name) at ``values``' arg-max (``pick`` = 1) or arg-min (-1); (None, None) if empty
    or not a number (a bus cut off from the supply)."""
    if not len(names):
        return None, None
    finite = np.where(np.isfinite(values), values, -np.inf if pick > 0 else np.inf)
    i = int(np.argmax(finite) if pick > 0 else np.argmin(finite))
    if not np.isfinite(finite[i]):
        return None, None
    return round(float(values[i]), 4), names[i]


def summarize(screen: Screen, board_schedule: Mapping[str, int], result: CheckResult) -> GridSummary:
    """The summary of a checked schedule (W per board, + export) and its check ``result``."""
    state: GridState
    if result.ac_state is not None:
        state, source = result.ac_state, AC
    else:
        state, source = screen.predict(screen.grid.bus_schedule(board_schedule)), SCREEN
    v_min = _at(state.vm_pu, screen.v_buses, -1)
    v_max = _at(state.vm_pu, screen.v_buses, 1)
    line = _at(state.line_loading, screen.lines, 1)
    trafo = _at(state.trafo_loading, screen.transformers, 1)
    return GridSummary(*v_min, *v_max, *line, *trafo, len(result.violations), source)
