"""The delivery guard: before orders go out, check the interval's expected schedule against the
grid and, if it breaks a limit, set PV export limits on the boards that fix it at least cost.

Each curtailment carries its reason (the constraint and its predicted value) and the
compensation owed to the member for the export it may not sell: ``feed_in`` per curtailed kWh,
paid by the grid operator whose grid could not carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from coordinator.delivery.grid import GridModel
from coordinator.delivery.screen import CheckResult, Screen
from coordinator.redispatch import Resource, redispatch


@dataclass(frozen=True)
class Curtailment:
    board: str
    pv_limit_w: int  # the export limit to send
    delta_w: int  # change of the board's expected injection (< 0)
    reason: str
    compensation: int  # nano-cent for the interval


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
    """``schedule``: expected W per board (+ export); ``pv_boards``: boards whose export can be
    limited, with their inverter's maximum export. Returns the curtailments and the check of the
    curtailed schedule (AC-confirmed where the screen is not sure)."""
    s = dict(schedule)
    total: dict[str, int] = {}
    why: dict[str, list[str]] = {}
    for _ in range(rounds):
        result = screen.check_boards(s)
        if result.ok:
            break
        cons = screen.constraints(grid.bus_schedule(s))
        res = [
            Resource(b, grid.board_bus(b), "pv_limit", s[b], -1, feed_in)
            for b in pv_boards
            if s.get(b, 0) > 0
        ]
        out = redispatch(cons, res, length)
        if not out.adjustments:
            break
        for a in out.adjustments:
            s[a.board] += a.delta_w
            total[a.board] = total.get(a.board, 0) + a.delta_w
            why.setdefault(a.board, []).append(a.reason)
    result = screen.check_boards(s)
    curt = [
        Curtailment(b, max(0, s[b]), d, "; ".join(dict.fromkeys(why[b])), -d * length * 10 // 36 * feed_in)
        for b, d in sorted(total.items())
    ]
    return curt, result
