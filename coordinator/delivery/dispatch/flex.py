"""The dispatcher's side of the flexibility market: the offers a request gets from the devices at
its congestion point, and the cleared orders active in an interval applied to the boards' targets
(:mod:`coordinator.delivery.flexibility` clears and settles them)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from coordinator.delivery.devices import next_time
from coordinator.delivery.dispatch.targets import Target
from coordinator.delivery.dispatch.view import StepView
from coordinator.delivery.flexibility import (
    ActiveOrder,
    Capability,
    FlexOffer,
    FlexRequest,
    auto_offers,
    injection_change,
)
from coordinator.site import Site

log = logging.getLogger("peergrid.dispatch")


def apply_orders(targets: dict[str, Target], active: Sequence[ActiveOrder], view: StepView) -> None:
    """Apply every flexibility order active in the interval to its board's target."""
    for o in active:
        e = view.devices.get(o.board_id)
        t = targets.setdefault(o.board_id, Target(o.party if e is None else e.member.id))
        if t.integrated and o.asset in ("battery", "ev") and o.direction == "reduce":
            continue  # the home's plan already delivers it (first_step's flex)
        d = injection_change(o.direction, o.power_w)  # + : less import / more export
        dev = None if e is None else e.devices
        if o.asset == "battery":
            t.bat_w = (t.bat_w or 0) - d
        elif o.asset == "ev":
            t.ev_w = max(0, (t.ev_w or 0) - d)
            t.phases = dev.ev[1] if dev is not None and dev.ev else t.phases
        elif o.asset == "load" and dev is not None and dev.deferrable is not None:
            t.switch_off(dev.deferrable[1])
        elif o.asset == "pv_limit":
            t.pv_limit_w = max(0, view.expected.get(o.board_id, 0) + d)


def offers(site: Site, view: StepView, request: FlexRequest) -> list[FlexOffer]:
    """Offers for a posted request from the devices of the members at its congestion point (their
    feeder or bus): what each can hold over the whole request, at the price it asks. A member whose
    preferences cannot be read has no devices in ``view`` and offers nothing."""
    end = request.start + request.intervals * site.length
    per = request.intervals * site.length * 10 // 36  # mWh per W held over the request
    caps = []
    for board, e in sorted(view.devices.items()):
        m, dev = e.member, e.devices
        if request.congestion_point not in (m.feeder, m.bus, site.grid):  # the grid id: the connection
            continue
        last = view.latest.get(board)
        soc = None if last is None else last.bat_soc
        if dev.battery is not None and soc is not None:
            cap, cw, dw, lo = dev.battery
            stored = cap * soc // 1000
            price = dev.ask("battery")
            down = min(dw, max(0, stored - lo) // per)
            caps.append(Capability(m.id, board, "battery", "reduce", down, price))
            caps.append(
                Capability(m.id, board, "battery", "increase", min(cw, max(0, cap - stored) // per), price)
            )
        st = m.prefs.storage
        if (
            dev.ev is not None
            and st is not None
            and st.is_ev
            and soc is not None
            and st.departure is not None
        ):
            cw = dev.ev[0]
            need = dev.ev_need(soc)
            leave = next_time(request.start + 1, st.departure)
            # charging later: only if what it needs still fits between the request's end and departure
            if need and cw * (leave - end) * 10 // 36 >= need:
                caps.append(Capability(m.id, board, "ev", "reduce", cw, dev.ask("ev")))
            if need and leave >= end:  # charging more: as far as it still needs energy
                caps.append(Capability(m.id, board, "ev", "increase", min(cw, need // per), dev.ask("ev")))
        if dev.deferrable is not None:
            on = min(dev.load_on(request.start + k * site.length) for k in range(request.intervals))
            caps.append(Capability(m.id, board, "load", "reduce", on, dev.ask("load")))
        export = view.expected.get(board, 0) if m.prefs.pv is not None else 0
        if export > 0:
            caps.append(Capability(m.id, board, "pv_limit", "increase", export, dev.ask("pv")))
    return auto_offers(request, caps)
