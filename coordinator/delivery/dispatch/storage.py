"""The storage market: before an interval starts, clear the batteries' and EVs' orders against the
other members' forecast positions; each storage board's target is the power its cleared energy
implies, and the storage's trades are its schedule, which settlement honours at their prices.

The forecast of every other member is its measured net energy in the last settled interval
(persistence forecast). The state of charge comes from the board's latest reading (``bat_soc``,
per-mille; for an EV, the vehicle's, by ISO 15118 or the car's API). An EV charges to its target by
its next departure (UTC) at least cost and never discharges; its board gets a charging current per
phase instead of a battery setpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from coordinator.delivery.devices import next_time
from coordinator.delivery.dispatch.targets import Target
from coordinator.delivery.dispatch.view import StepView
from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger
from coordinator.ledger.queries import dispatch as q
from coordinator.market import (
    BUY,
    Order,
    Preferences,
    Storage,
    clear,
    energy_by_order,
    forecast_orders,
    storage_orders,
)
from coordinator.members import PER_MILLE, Member, StoragePrefs
from coordinator.site import Site

log = logging.getLogger("peergrid.dispatch")
EX_ANTE_SCHEME = "pairwise"


@dataclass(frozen=True)
class Dispatched:
    """A member's storage in the clearing and the board that drives it."""

    storage: Storage
    board: str
    ev_phases: int  # 0: a battery


def storages(ledger: Ledger, view: StepView, start: int) -> dict[str, Dispatched]:
    """Member -> its storage in the clearing of ``start``. Left out: an integrator home's (it
    follows its own plan), a storage whose state of charge is not known yet (its board keeps its
    safe default), one the market refuses (logged and counted)."""
    out = {}
    for m in view.members:
        st = m.prefs.storage
        board = view.board_of.get(m.id)
        if st is None or board is None or m.prefs.integrator is not None:
            continue
        last = view.latest.get(board)
        if last is None or last.bat_soc is None:
            continue
        try:
            s = _storage(m, st, board, last.bat_soc, start)
        except CoordinatorError as e:  # one member's storage must not stop the others
            log.warning("storage of %s left out of dispatch: %s", m.id, e)
            ledger.count_rejections({"bad_storage_prefs": 1})
            continue
        out[m.id] = Dispatched(s, board, st.phases if st.is_ev else 0)
    return out


def _storage(m: Member, st: StoragePrefs, board: str, soc: int, start: int) -> Storage:
    cap = st.capacity_mwh
    deadline = None
    target = 0
    if st.is_ev and st.departure is not None:
        deadline = next_time(start + 1, st.departure)
        target = cap * st.target_soc // PER_MILLE
    return Storage(
        m.id,
        board,
        cap,
        cap * soc // PER_MILLE,
        st.max_charge_w,
        0 if st.is_ev else st.max_discharge_w,
        target_soc=target,
        deadline=deadline,
        min_soc=cap * st.min_soc // PER_MILLE,
        feeder=m.feeder,
    )


def clear_storage(
    ledger: Ledger, site: Site, view: StepView, start: int
) -> tuple[dict[str, Target], list[q.ScheduleRow]]:
    """Clear the ex-ante market of interval ``start``: each storage board's target and the
    storage's trades (buyer, seller, mWh, price, fee)."""
    mine = storages(ledger, view, start)
    if not mine:
        return {}, []
    tariff = site.tariff
    orders: list[Order] = []
    net = q.member_net(ledger, start - site.length)
    for m in view.members:  # a forecast at the tariff's anchors: no member's own price limits
        if m.id not in mine and net.get(m.id):
            orders.extend(forecast_orders(start, Preferences(m.id, feeder=m.feeder), tariff, net[m.id]))
    for d in mine.values():
        orders.extend(storage_orders(start, site.length, d.storage, tariff))
    c = clear(EX_ANTE_SCHEME, start, orders, tariff)
    filled = energy_by_order(c)
    net_of: dict[str, int] = {}  # party -> mWh bought (+) / sold (-) in this clearing
    for o in orders:
        got = filled.get(o.order_id, 0)
        net_of[o.party] = net_of.get(o.party, 0) + (got if o.side == BUY else -got)
    schedule = [
        (r[0], r[1], r[2], r[3], r[4])
        for r in list(c.trades.rows) + list(c.residual.rows)
        if r[0] in mine or r[1] in mine
    ]
    out: dict[str, Target] = {}
    for party, d in sorted(mine.items()):
        w = net_of.get(party, 0) * 36 // (10 * site.length)  # mWh over the interval -> W (1 mWh = 3.6 J)
        if d.ev_phases:
            out[d.board] = Target(party, ev_w=max(0, w), phases=d.ev_phases)
        else:
            out[d.board] = Target(party, bat_w=w)
    return out, schedule
