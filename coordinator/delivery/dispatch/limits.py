"""Capacity limits in the dispatch: the grid operator's cap on the import or export of a
congestion point (a feeder or bus) or of the whole connection (the grid id), for a window
(:mod:`coordinator.ledger.flex_requests`, from the operator API, the CLI or OpenADR 3).

With the targets of the storage market, the integrator homes and the flexibility orders in place,
the expected flow at each limited point is the sum of its boards' expected injection
(:func:`.targets.grid_input`). Above an import limit the excess is taken, in this order, from EV
charging (down to what the car needs now to leave charged), deferrable loads (switched off) and
batteries (discharging more, within their state of charge); above an export limit from batteries
(charging more) and then PV export (limited). Each change is recorded with its reason as a
redispatch; a capacity limit is a condition of the connection, so it carries no compensation. What
the devices cannot take off is logged and counted (``capacity_limit_short``).
"""

from __future__ import annotations

import logging

from coordinator.delivery.dispatch.targets import Target, grid_input
from coordinator.delivery.dispatch.view import StepView
from coordinator.ledger import Ledger, flex_requests
from coordinator.ledger.queries.dispatch import RedispatchRecord
from coordinator.site import Site

log = logging.getLogger("peergrid.dispatch")


def apply(
    ledger: Ledger, site: Site, start: int, tg: dict[str, Target], view: StepView
) -> list[RedispatchRecord]:
    """Hold every capacity limit in force at ``start`` by changing the targets; the changes."""
    limits = flex_requests.limits_at(ledger, start)
    if not limits:
        return []
    out: list[RedispatchRecord] = []
    for lim in limits:
        sched, assets = grid_input(site, start, tg, view)
        boards = sorted(
            b
            for m, b in view.board_of.items()
            if b in sched
            and any(x.id == m and lim.resource in (x.feeder, x.bus, site.grid) for x in view.members)
        )
        net = sum(sched[b] for b in boards)  # + export
        excess = (-net - lim.limit_w) if lim.direction == "import" else (net - lim.limit_w)
        why = f"capacity limit {lim.limit_id}: {lim.direction} at {lim.resource} <= {lim.limit_w} W"
        for b in boards:
            if excess <= 0:
                break
            a = assets[b]
            t = tg.setdefault(b, Target(view.member_of(b)))
            moves: list[tuple[str, int]] = []
            if lim.direction == "import":
                moves = [
                    ("ev", a.ev_w - a.ev_min_w),
                    ("load", a.load_w),
                    ("battery", a.bat_w + a.bat_discharge_w),
                ]
            else:
                moves = [("battery", a.bat_charge_w - a.bat_w), ("pv_limit", a.pv_w)]
            for kind, room in moves:
                take = min(excess, max(0, room))
                if take <= 0:
                    continue
                if kind == "ev":
                    t.ev_w, t.phases = a.ev_w - take, a.ev_phases
                    setpoint = t.ev_w
                elif kind == "load":
                    t.switch_off(a.load_relay)
                    take, setpoint = a.load_w, 0
                elif kind == "battery":
                    t.bat_w = a.bat_w - take if lim.direction == "import" else a.bat_w + take
                    setpoint = t.bat_w
                else:
                    t.pv_limit_w = max(0, a.pv_w - take)
                    setpoint = t.pv_limit_w
                delta = take if lim.direction == "import" else -take  # + : more injection
                out.append(RedispatchRecord(b, kind, delta, setpoint, why, 0))
                excess -= take
                if excess <= 0:
                    break
        if excess > 0:
            log.warning("%s: %d W more than the devices at %s can take off", why, excess, lim.resource)
            ledger.count_rejections({"capacity_limit_short": 1})
    return out
