"""Integrator homes: each home's battery and EV follow the first step of its own plan over its
horizon (:func:`coordinator.delivery.integrator.first_step`), at the expected local prices and with
the flexibility order active on the home, instead of the storage market."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from coordinator.delivery.assets import ev_w
from coordinator.delivery.devices import next_time
from coordinator.delivery.dispatch.targets import Target
from coordinator.delivery.dispatch.view import Equipped, StepView
from coordinator.delivery.flexibility import ActiveOrder
from coordinator.delivery.integrator import PlanError, first_step
from coordinator.ledger import Ledger
from coordinator.ledger.queries import dispatch as q
from coordinator.market import Tariff
from coordinator.members import EvPrefs
from coordinator.site import Site
from protocol import frame, messages

log = logging.getLogger("peergrid.dispatch")


def prices(ledger: Ledger, tariff: Tariff) -> tuple[int, int]:
    """(buy, sell) a home expects per kWh: the last local clearing price with the local grid fee,
    bounded by retail and feed-in (those alone before any interval was cleared)."""
    local = q.last_price(ledger)
    if local is None:
        return tariff.retail, tariff.feed_in
    return min(tariff.retail, local + tariff.grid_fee_local), max(tariff.feed_in, local)


def homes(
    ledger: Ledger, site: Site, view: StepView, start: int, active: Sequence[ActiveOrder]
) -> dict[str, Target]:
    """Board -> target of every integrator home. A home whose plan cannot be made is left out
    (logged and counted), never the others."""
    buy, sell = prices(ledger, site.tariff)
    flex = {o.board_id: (o.power_w, o.price) for o in active if o.direction == "reduce"}
    out = {}
    for board, e in sorted(view.devices.items()):
        if e.member.prefs.integrator is None:
            continue
        try:
            out[board] = _home(ledger, site, start, board, e, view, buy, sell, flex.get(board, (0, 0)))
        except PlanError as err:
            log.warning("integrator home %s left out of dispatch: %s", e.member.id, err)
            ledger.count_rejections({"bad_integrator_plan": 1})
    return out


def _home(
    ledger: Ledger,
    site: Site,
    start: int,
    board: str,
    e: Equipped,
    view: StepView,
    buy: int,
    sell: int,
    flex: tuple[int, int],
) -> Target:
    prefs = e.member.prefs
    dev = e.devices
    horizon = prefs.integrator.horizon if prefs.integrator is not None else 1
    last = view.latest.get(board)
    soc = dev.battery_mwh(None if last is None else last.bat_soc)
    need = until = 0
    deadline = None
    if prefs.ev is not None and dev.ev is not None:
        need, until, deadline = _ev_need(ledger, site.length, start, board, prefs.ev)
    bat_w, ev_w_ = first_step(
        view.expected.get(board, 0),
        dev,
        soc,
        need,
        until,
        horizon=horizon,
        length=site.length,
        buy=buy,
        sell=sell,
        flex=flex,
    )
    return Target(
        e.member.id,
        bat_w=bat_w if dev.battery is not None else None,
        ev_w=ev_w_ if need else None,
        phases=dev.ev[1] if dev.ev else 1,
        ev_need=need,
        ev_deadline=deadline,
        integrated=True,
    )


def _ev_need(ledger: Ledger, length: int, start: int, board: str, ev: EvPrefs) -> tuple[int, int, int | None]:
    """(mWh still to charge, intervals left, departure) of a home's EV plugged in now; (0, 0, None)
    while it is away."""
    arrive = next_time(start, ev.arrive)
    leave = next_time(start, ev.departure)
    if leave >= arrive:  # away until it arrives
        return 0, 0, None
    # plugged in now: what is still missing by departure, after what it was sent since it arrived
    sent = 0
    for fr in q.order_frames(ledger, board, arrive - 86_400, start):
        o = messages.decode(bytes(frame.split(fr)[0]))
        if isinstance(o, messages.Order) and o.ev_ma:
            sent += ev_w(o.ev_ma, ev.phases) * length * 10 // 36
    return max(0, ev.need_mwh - sent), (leave - start) // length, leave
